"""Table 6 (training configuration, from the config actually used) and Figures 2 and 7
(training loss and gradient norm against step, from the per-step metrics CSVs)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from .savefig import save_figure
from .tables import format_value, write_table

METRICS_COLUMNS = ("step", "tokens", "loss", "grad_norm", "lr", "tokens_per_s", "skipped")


def training_config_table(sizes: list[dict], train: Mapping, param_counts: Mapping[str, int]) -> pd.DataFrame:
    """One column per size, rows as in the paper's Table 6."""
    rows = []
    for size in sizes:
        name = size["name"]
        tokens = size["steps"] * train["global_batch"] * train["seq_len"]
        rows.append({
            "size": size["label"],
            "parameters": f"{param_counts.get(name, float('nan')) / 1e6:.2f}M",
            "steps": size["steps"],
            "peak LR": format_value(size["lr"], 6).rstrip("0"),
            "warmup steps": size["warmup_steps"],
            "schedule": ("linear warmup, then constant" if train["min_lr_ratio"] == 1
                         else f"linear warmup, cosine to {train['min_lr_ratio']:g} x LR"),
            "global batch (sequences x tokens)": f"{train['global_batch']} x {train['seq_len']}",
            "tokens": f"{tokens:,}",
            "optimizer": f"AdamW betas {tuple(train['betas'])}, eps {train['adam_eps']:g}",
            "weight decay": (f"{train['weight_decay']} (matrices only)"
                             if train.get("weight_decay_on", "all") == "matrices" else train["weight_decay"]),
            "grad clip": train["grad_clip"],
            "seed": train["seed"],
        })
    frame = pd.DataFrame(rows).set_index("size").T.reset_index().rename(columns={"index": "setting"})
    return frame.astype(str)


def read_metrics(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing training metrics file: {path}")
    frame = pd.read_csv(path)
    missing = [c for c in METRICS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {list(frame.columns)})")
    if frame.empty:
        raise ValueError(f"{path} holds no training steps")
    return frame


def seed_series(paths, metric: str, smooth: int = 1) -> pd.DataFrame:
    """One column per seed's metrics.csv: `metric` by step (skipped steps left out), smoothed
    with a moving average over `smooth` steps."""
    per_seed = []
    for path in paths:
        kept = read_metrics(path).set_index("step")
        kept = kept[kept["skipped"] == 0][metric]
        per_seed.append(kept.rolling(smooth, min_periods=1).mean() if smooth > 1 else kept)
    return pd.concat(per_seed, axis=1)


def plot_training_curves(curves: Mapping[str, Mapping[str, str | Path]], out_stem: str | Path,
                         title: str, smooth: int = 5) -> list[Path]:
    """curves: size label -> {arm: metrics.csv, or a list of them, one per seed}. One row of
    (loss, grad norm) panels per size; with several seeds the line is their mean and the
    shaded band spans the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(curves)
    fig, axes = plt.subplots(len(sizes), 2, figsize=(10, 3.2 * len(sizes)), squeeze=False)
    for row, size in enumerate(sizes):
        for arm, paths in curves[size].items():
            paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
            for col, metric in enumerate(("loss", "grad_norm")):
                joined = seed_series(paths, metric, smooth)
                label = arm if len(paths) == 1 else f"{arm} (mean of {len(paths)} seeds, band: min-max)"
                line, = axes[row, col].plot(joined.index, joined.mean(axis=1), label=label, linewidth=1.2)
                if len(paths) > 1:
                    axes[row, col].fill_between(joined.index, joined.min(axis=1), joined.max(axis=1),
                                                color=line.get_color(), alpha=0.25, linewidth=0)
        axes[row, 0].set_ylabel(f"{size}\ntraining loss")
        axes[row, 1].set_ylabel("gradient norm")
        axes[row, 1].set_yscale("log")
        for col in range(2):
            axes[row, col].set_xlabel("step")
            axes[row, col].grid(alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    fig.suptitle(title + (f" (moving average over {smooth} steps)" if smooth > 1 else ""))
    fig.tight_layout()
    return save_figure(fig, out_stem)


def write_training_config_table(sizes, train, param_counts, out_stem) -> list[Path]:
    frame = training_config_table(sizes, train, param_counts)
    return write_table(frame, out_stem, "Table 6: training configuration of this run.")
