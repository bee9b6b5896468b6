"""Snakemake adapter: one per-seed table of every seed -> results/tables/{table}.{csv,md,tex}, mean ± std."""
from pathlib import Path

from softpick_repro.report.seed_tables import combine_seed_tables

combine_seed_tables(list(snakemake.input), snakemake.params.seeds, Path(snakemake.output[0]).with_suffix(""),
                    log=snakemake.log[0])
