"""Snakemake adapter: Figures 2 and 7 (training loss and grad norm vs step)."""
from pathlib import Path

from softpick_repro.logs import log_to
from softpick_repro.report.training import plot_training_curves

with log_to(snakemake.log[0]):
    curves: dict = {}
    for key, path in snakemake.input.items():
        size, arm, _seed = key.split("|")
        curves.setdefault(snakemake.params.labels[size], {}).setdefault(arm, []).append(path)
    stem = Path(snakemake.output[0]).with_suffix("")
    plot_training_curves(curves, stem, snakemake.params.title)
