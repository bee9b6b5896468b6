"""Snakemake adapter: one table per seed -> the table with mean ± std over the seeds."""
from pathlib import Path

from softpick_repro.logs import log_to
from softpick_repro.report.seed_tables import combine_seed_tables

with log_to(snakemake.log[0]):
    written = combine_seed_tables(list(snakemake.input), snakemake.params.seeds,
                                  Path(snakemake.output[0]).with_suffix(""))
    print("\n".join(map(str, written)))
