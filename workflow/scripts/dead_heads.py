"""Snakemake adapter for two rules (dispatch on the rule name):

- dead_heads: one exported checkpoint (input.model) + the validation split (input.manifest;
  every shard it lists) -> its dead-head record output[0]; params.cfg = config `dead_heads:`, params.device.
- figure06_dead_heads: every record (inputs keyed "size|arm|ckpt") -> output PDF/PNG, one
  series per (size, arm); params.labels (size -> label), params.eps, params.title.
"""
from pathlib import Path

import torch

from softpick_repro.logs import log_to

torch.set_num_threads(max(1, snakemake.threads))  # share the cores with parallel jobs

with log_to(snakemake.log[0]):
    if snakemake.rule == "figure06_dead_heads":
        from softpick_repro.report.deadhead_passkey import plot_dead_heads

        series: dict = {}
        names = list(snakemake.input.keys())   # size|arm|seed|ckpt
        several_seeds = len({name.split("|")[2] for name in names}) > 1
        for name in names:
            size, arm, seed, _ = name.split("|")
            path = snakemake.input[name]
            label = f"{snakemake.params.labels[size]} {arm}" + (f" seed {seed}" if several_seeds else "")
            series.setdefault(label, []).append(path)
        plot_dead_heads(series, snakemake.params.eps, Path(snakemake.output[0]).with_suffix(""),
                        snakemake.params.title)
    else:
        from softpick_repro.analysis.dead_heads import run_dead_heads

        wc = snakemake.wildcards
        run_dead_heads(snakemake.input.model, Path(snakemake.input.manifest).parent,
                       snakemake.output[0], snakemake.params.cfg, device=snakemake.params.device,
                       meta={"size": wc.size, "arm": wc.arm, "ckpt": wc.ckpt})
