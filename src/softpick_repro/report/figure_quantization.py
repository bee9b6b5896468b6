"""Figure 3: benchmark scores of quantized models against the bit width.

One panel row per size, one panel per task: acc_norm x100 for multiple-choice tasks,
perplexity (log scale) for the cloze task, word_perplexity (log scale) for the perplexity
task. x = bits; one line per (arm, method): colour = arm, line style and marker = method.
The unquantized model of each arm is a dotted horizontal line. Non-finite scores (a model
quantized into NaN/inf) cannot be drawn; the panel says how many were left out.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .savefig import save_figure

from .benchmark_tables import METHOD_LABELS, QUANT_METHODS, table_score, task_label

FIGURE_METRIC = {"multiple_choice": "acc_norm", "cloze": "perplexity", "perplexity": "word_perplexity"}
ARM_COLOURS = {"softmax": "#1f77b4", "softpick": "#ff7f0e"}
METHOD_STYLES = {"hqq": ("-", "o"), "gptq": ("--", "s"), "bnb": ("-.", "^")}


def _panel_series(frame: pd.DataFrame, size: str, task: str, metric: str):
    sub = frame[(frame["size"] == size) & (frame["task"] == task) & (frame["metric"] == metric)]
    return sub.assign(score=[table_score(metric, v) for v in sub["value"]])


def plot_quantization(frame: pd.DataFrame, sizes: Sequence[tuple[str, str]],
                      methods: Mapping[str, Sequence[int]], out_stem: str | Path,
                      arms: Sequence[str] = ("softmax", "softpick")) -> list[Path]:
    """Draw Figure 3 from `benchmark_tables.load_eval_records` rows; writes PDF and PNG.
    Rows of several seeds of one model are drawn as their mean with +- one std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = frame[frame["arm"].isin(arms)]
    tasks = list(dict.fromkeys(sub["task"]))
    if not tasks or not len(sizes):
        raise ValueError("Figure 3 needs evaluation results for at least one task and size")
    all_bits = sorted({int(b) for m in QUANT_METHODS for b in methods.get(m, [])})
    if not all_bits:
        raise ValueError("Figure 3 needs at least one quantization width in quantization.methods")
    fig, axes = plt.subplots(len(sizes), len(tasks), figsize=(3.2 * len(tasks), 2.8 * len(sizes)),
                             squeeze=False)
    for r, (size, size_label) in enumerate(sizes):
        for c, task in enumerate(tasks):
            ax = axes[r][c]
            rows = sub[sub["task"] == task]
            kind, stand = rows["kind"].iloc[0], rows["stands_in_for"].iloc[0]
            metric = FIGURE_METRIC[kind]
            data = _panel_series(sub, size, task, metric)
            omitted = 0
            for arm in arms:
                colour = ARM_COLOURS.get(arm)
                for method in QUANT_METHODS:
                    bits = [int(b) for b in methods.get(method, [])]
                    pts = data[(data["arm"] == arm) & (data["method"] == method)
                               & data["bits"].isin(bits)]
                    good = pts[[math.isfinite(v) for v in pts["score"]]]
                    omitted += len(pts) - len(good)
                    if len(good):
                        # one row per seed: the mean, with +- one std across seeds as error bars
                        agg = good.groupby(good["bits"].astype(int))["score"].agg(["mean", "std", "count"])
                        style, marker = METHOD_STYLES[method]
                        spread = agg["std"].where(agg["count"] > 1)
                        ax.errorbar(agg.index, agg["mean"], yerr=None if spread.isna().all() else spread,
                                    linestyle=style, marker=marker, color=colour, capsize=2,
                                    label=f"{arm} {METHOD_LABELS[method]}")
                base = data[(data["arm"] == arm) & (data["quant"] == "none")]["score"]
                base = base[[math.isfinite(v) for v in base]]
                if len(base):
                    ax.axhline(base.mean(), color=colour, linestyle=(0, (1, 3)), linewidth=1,
                               label=f"{arm} unquantized")
            if kind != "multiple_choice":
                ax.set_yscale("log")
            if omitted:
                ax.text(0.02, 0.02, f"{omitted} non-finite point(s) omitted", fontsize=7,
                        transform=ax.transAxes)
            ax.set_xticks(all_bits)
            ax.set_xlabel("bits")
            ax.set_title(f"{size_label}: {task_label(task, stand)}", fontsize=9)
            ax.set_ylabel(f"{metric} x100" if kind == "multiple_choice" else metric)
            ax.grid(True, alpha=0.3)
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
                   ncol=min(4, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save_figure(fig, out_stem)




def write_figure03(eval_paths, sizes: Sequence[Mapping], methods: Mapping[str, Sequence[int]],
                   out_stem: str | Path, arms: Sequence[str] = ("softmax", "softpick")) -> list[Path]:
    """Figure 3 from evaluation JSON paths; `sizes` are the config's size entries."""
    from .benchmark_tables import load_eval_records

    frame = load_eval_records(eval_paths)
    return plot_quantization(frame, [(s["name"], s["label"]) for s in sizes], methods, out_stem, arms)
