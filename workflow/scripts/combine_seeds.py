"""Snakemake adapter: each table of every seed -> the table with mean ± std over the seeds.

Rule contract: input = results/tables/seed_{seed}/<table>.csv for params.tables x params.seeds
(table-major); output = results/tables/<table>.{csv,md,tex} in the same table order.
"""
from pathlib import Path

from softpick_repro.logs import log_to
from softpick_repro.report.seed_tables import combine_seed_tables

with log_to(snakemake.log[0]):
    tables, seeds = snakemake.params.tables, snakemake.params.seeds
    inputs = list(snakemake.input)
    if len(inputs) != len(tables) * len(seeds):
        raise ValueError(f"{len(inputs)} per-seed tables for {len(tables)} tables x {len(seeds)} seeds")
    out_dir = Path(snakemake.output[0]).parent
    for i, table in enumerate(tables):
        written = combine_seed_tables(inputs[i * len(seeds):(i + 1) * len(seeds)], seeds, out_dir / table)
        print("\n".join(map(str, written)))
