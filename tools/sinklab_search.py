"""Sink-lab search driver: train softmax and softpick on one synthetic setting, measure both.

Each setting is trained by the project's trainer (softpick_repro.train.train) on token shards
written from the trigger-copy generator (softpick_repro.data.synthetic_tasks), and measured
by the project's metrics (softpick_repro.analysis.attention_probe.measure: sink rate over
(sample, layer, head), kurtosis and min/max over every hidden state incl. the embedding
output and the final norm) on held-out documents of the same generator. One JSON line per
setting is appended to --out, with wall and CPU time (user + sys of this process) per arm.

    nice -n 15 python tools/sinklab_search.py --name base --steps 1000 [--lr 3e-3 ...]

Settings are given by flags (see --help); the row records every value, so a row's command
is `python tools/sinklab_search.py` plus its `argv`. `python tools/sinklab_search.py table
[FILE]` prints the rows as the Markdown table of docs/SINKLAB.md; `summary FILE...` prints
one line per two-arm row with the four criteria and where the activation peaks sit.
`tools/sinklab_grid.py` runs many settings in parallel (the GPU map of docs/SINKLAB.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="row label")
    p.add_argument("--out", default="docs/sinklab_search.jsonl")
    p.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--arms", default="softmax,softpick")
    # generator
    p.add_argument("--symbols", type=int, default=64)
    p.add_argument("--offsets", default="1,2", help="copy offsets, comma-separated")
    p.add_argument("--triggers", type=int, default=3, help="trigger symbols per offset")
    p.add_argument("--trigger-prob", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.3, help="Dirichlet concentration of the bigram rows")
    p.add_argument("--plain-fraction", type=float, default=0.0)
    p.add_argument("--data-seed", type=int, default=0)
    # model and training
    p.add_argument("--preset", default="micro-s")
    p.add_argument("--layers", type=int, default=0, help="override num_hidden_layers (0 = preset)")
    p.add_argument("--hidden", type=int, default=0, help="override hidden size (0 = preset)")
    p.add_argument("--heads", type=int, default=0, help="override heads (0 = preset)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=0, help="warmup steps (0 = 5%% of steps)")
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--wd-on", default="all", choices=("all", "matrices"),
                   help="weight decay on all parameters (the paper) or on the matrices only (train.weight_decay_on)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--grad-clip", type=float, default=1.0, help="global gradient-norm clip (train.grad_clip)")
    p.add_argument("--seed", type=int, default=79)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="training device (the shipped setting must run on the CPU; cuda maps the space faster)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="training precision (fp32 everywhere keeps GPU rows comparable with CPU rows)")
    # measurement
    p.add_argument("--eval-docs", type=int, default=64)
    p.add_argument("--eval-len", type=int, default=0, help="metric window (0 = seq-len)")
    return p.parse_args(argv)


def model_overrides(args) -> dict:
    from softpick_repro.model.presets import PRESETS, swiglu_width

    out = {}
    hidden = args.hidden or PRESETS[args.preset]["hidden_size"]
    heads = args.heads or PRESETS[args.preset]["num_attention_heads"]
    if args.layers:
        out["num_hidden_layers"] = args.layers
    if args.hidden or args.heads:
        out.update(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads,
                   head_dim=hidden // heads, intermediate_size=swiglu_width(hidden))
    return out


def write_shards(task, train_docs: int, val_docs: int, directory: Path) -> Path:
    """Token shards of the generator in the tokenize stage's id layout (symbol i -> id 3 + i)."""
    from softpick_repro.io import dump_json, sha256_file

    if (directory / "manifest.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    ids = task.generate_ids(train_docs + val_docs) + 3
    docs = np.concatenate([np.ones((len(ids), 1), dtype=np.int64), ids], axis=1)
    splits = {"train": docs[:train_docs].reshape(-1), "val": docs[train_docs:].reshape(-1)}
    for split, array in splits.items():
        array.astype(np.uint16).tofile(directory / f"{split}.bin")
    dump_json({"format": "flat token ids, BOS before each document, no EOS", "dtype": "uint16",
               "files": {"train": "train.bin", "val": "val.bin"},
               "vocab_size": 3 + len(task.vocabulary), "bos_id": 1, "eos_id": 2,
               "tokens": {k: int(v.size) for k, v in splits.items()}, "source": task.describe(),
               # the trainer verifies each shard against its manifest's hash (softpick_repro.integrity)
               "sha256": {k: sha256_file(directory / f"{k}.bin") for k in splits}},
              directory / "manifest.json")
    return directory


def run_arm(args, arm: str, tokens: Path, work: Path) -> dict:
    import torch

    from softpick_repro.analysis import attention_probe as probe
    from softpick_repro.analysis.metric_text import val_shard_windows
    from softpick_repro.train import train
    from softpick_repro.train.export import load_snapshot_model

    warmup = args.warmup or max(1, args.steps // 20)
    cfg = dict(preset=args.preset, arm=arm, seq_len=args.seq_len, global_batch=args.batch,
               micro_batch=args.batch, steps=args.steps, lr=args.lr, warmup_steps=warmup,
               min_lr_ratio=args.min_lr_ratio, weight_decay=args.wd, weight_decay_on=args.wd_on,
               betas=[0.9, args.beta2], grad_clip=args.grad_clip,
               seed=args.seed, ckpt_every=args.steps, val_every=args.steps, val_batches=2,
               threads=1, device=args.device, precision=args.precision,
               model_overrides=model_overrides(args))
    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    summary = train(cfg, tokens_dir=tokens, ckpt_dir=work / arm / "ckpt", out_dir=work / arm / "out",
                    progress=False)
    train_wall, train_cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    model, _ = load_snapshot_model(work / arm / "out" / "weights" / "final.safetensors")
    eval_len = args.eval_len or args.seq_len
    windows, _ = val_shard_windows(tokens / "manifest.json", eval_len, args.eval_docs)
    torch.set_num_threads(1)
    m = probe.measure(model, [windows], torch.float32, sink_thresholds=(0.2, 0.3))
    per_layer_max = m["max_abs_per_layer"]
    return {"arm": arm, "val_loss": summary["final_val_loss"],
            "sink_eps0.3": m["sink_rate_eps0.3"], "sink_eps0.2": m["sink_rate_eps0.2"],
            "kurtosis": m["kurtosis"],
            "max_abs": max(abs(m["min_activation"]), abs(m["max_activation"])),
            "max_abs_per_entry": per_layer_max, "sparsity_pct": m["sparsity_pct"],
            "kurtosis_per_entry": [e["kurtosis"] for e in m["per_layer"]],
            "rms_per_entry": [(e["variance"] + e["mean"] ** 2) ** 0.5 for e in m["per_layer"]],
            "bos_max_abs_per_entry": m["first_token_max_abs_per_layer"],
            "rest_max_abs_per_entry": m["other_tokens_max_abs_per_layer"],
            "mean_first_token_mass": m["mean_first_token_mass"],
            "wall_s": time.perf_counter() - wall0, "cpu_s": _cpu_seconds() - cpu0,
            "train_wall_s": train_wall, "train_cpu_s": train_cpu, "n_params": summary["n_params"]}


def _pair(row: dict, key: str, spec: str, suffix: str = "") -> str:
    """`softmax / softpick` of one measurement, "-" for an arm the row lacks."""
    return " / ".join(format(row["arms"][arm][key], spec) + suffix if arm in row["arms"] else "-"
                      for arm in ("softmax", "softpick"))


def _ratio(row: dict, key: str, spec: str) -> str:
    """` (softmax / softpick x)` when the row has both arms."""
    arms = row["arms"]
    if not {"softmax", "softpick"} <= set(arms):
        return ""
    return f" ({format(arms['softmax'][key] / arms['softpick'][key], spec)}x)"


def markdown_table(path: str) -> str:
    """The rows of a results file as the Markdown table of docs/SINKLAB.md."""
    lines = ["| setting | softmax sink @0.3 (@0.2) | softpick sink @0.3 | uniform @0.3 | kurtosis sm / sp | "
             "max abs sm / sp | val loss sm / sp | CPU s sm / sp (wall s) | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for text in Path(path).read_text().splitlines():
        row = json.loads(text)
        argv = row["argv"]
        # scratch and output locations do not change the numbers
        command = [a for i, a in enumerate(argv) if a not in ("--out", "--work")
                   and (i == 0 or argv[i - 1] not in ("--out", "--work"))]
        sm, sp = row["arms"].get("softmax"), row["arms"].get("softpick")
        sink = f"{sm['sink_eps0.3']:.1f}% ({sm['sink_eps0.2']:.1f}%)" if sm else "-"
        walls = "/".join(f"{r['wall_s']:.0f}" for r in row["arms"].values())
        lines.append(
            f"| {row['name']} | {sink} | {format(sp['sink_eps0.3'], '.1f') + '%' if sp else '-'} | "
            f"{row['uniform_sink_eps0.3_pct']:.0f}% (alpha {row['uniform_alpha']:.3f}) | "
            f"{_pair(row, 'kurtosis', '.1f')}{_ratio(row, 'kurtosis', '.1f')} | "
            f"{_pair(row, 'max_abs', '.2f')}{_ratio(row, 'max_abs', '.1f')} | "
            f"{_pair(row, 'val_loss', '.4f')} | {_pair(row, 'cpu_s', '.0f')} ({walls}) | "
            f"`python tools/sinklab_search.py {' '.join(command)}` |")
    return "\n".join(lines)


def criteria(row: dict) -> tuple[bool, bool]:
    """(criteria 1-3, all four) of a two-arm row: softmax sink >= 30% at eps 0.3 with softpick
    at 0%, kurtosis and max |activation| ratios >= 10x, on windows of >= 64 tokens; the fourth
    is <= 600 s wall per arm, which only a CPU row can meet (the budget is the CPU's)."""
    args = parse(row["argv"])
    sm, sp = row["arms"]["softmax"], row["arms"]["softpick"]
    phenomenon = bool(sm["sink_eps0.3"] >= 30 and sp["sink_eps0.3"] == 0
                      and sm["kurtosis"] >= 10 * sp["kurtosis"] and sm["max_abs"] >= 10 * sp["max_abs"]
                      and (args.eval_len or args.seq_len) >= 64)
    in_budget = max(sm["wall_s"], sp["wall_s"]) <= 600 and row.get("device", "cpu") == "cpu"
    return phenomenon, phenomenon and in_budget


def merged_rows(paths: list[str]) -> list[dict]:
    """The rows of the files, one per setting name: arms trained as separate processes (one
    row each) are joined under their name."""
    rows: dict[str, dict] = {}
    for path in paths:
        for text in Path(path).read_text().splitlines():
            row = json.loads(text)
            if row["name"] in rows:
                rows[row["name"]]["arms"].update(row["arms"])
            else:
                rows[row["name"]] = row
    return list(rows.values())


def summary_table(paths: list[str]) -> str:
    """One line per setting with both arms: the four criteria side by side, and where the peaks
    sit (largest |activation| over the inner layers' outputs, at BOS and at the other tokens)."""
    def inner(res, key):
        values = res.get(key, [])[1:-1]
        return f"{max(values):.1f}" if values else "-"

    lines = ["| setting | sink @0.3 sm / sp | kurtosis sm / sp (ratio) | max abs sm / sp (ratio) | "
             "inner peak at BOS sm / sp | inner peak elsewhere sm / sp | val loss sm / sp | meets 1-3 | meets all 4 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in merged_rows(paths):
        sm, sp = row["arms"].get("softmax"), row["arms"].get("softpick")
        if not (sm and sp):
            continue
        phenomenon, everything = criteria(row)
        lines.append(
            f"| {row['name']} | {_pair(row, 'sink_eps0.3', '.1f', '%')} | "
            f"{_pair(row, 'kurtosis', '.1f')}{_ratio(row, 'kurtosis', '.2f')} | "
            f"{_pair(row, 'max_abs', '.1f')}{_ratio(row, 'max_abs', '.2f')} | "
            f"{inner(sm, 'bos_max_abs_per_entry')} / {inner(sp, 'bos_max_abs_per_entry')} | "
            f"{inner(sm, 'rest_max_abs_per_entry')} / {inner(sp, 'rest_max_abs_per_entry')} | "
            f"{_pair(row, 'val_loss', '.3f')} | {'yes' if phenomenon else 'no'} | "
            f"{'yes' if everything else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["table"]:
        print(markdown_table(argv[1] if len(argv) > 1 else "docs/sinklab_search.jsonl"))
        return 0
    if argv[:1] == ["summary"]:
        print(summary_table(argv[1:] or ["docs/sinklab_search.jsonl"]))
        return 0
    from softpick_repro.analysis.metrics import uniform_first_token_mass
    from softpick_repro.data.synthetic_tasks import TriggerCopyTask

    args = parse(argv)
    task = TriggerCopyTask(symbols=args.symbols, copy_offsets=tuple(int(o) for o in args.offsets.split(",")),
                           triggers_per_offset=args.triggers, trigger_prob=args.trigger_prob,
                           dirichlet_alpha=args.alpha, plain_fraction=args.plain_fraction,
                           length=args.seq_len - 1, seed=args.data_seed)
    task.check()
    train_docs = args.steps * args.batch + 1   # one pass: every window is new data
    work = Path(args.work or tempfile.mkdtemp(prefix="sinklab-"))
    key = hashlib.sha256(json.dumps([task.describe(), train_docs, args.eval_docs]).encode()).hexdigest()[:12]
    tokens = write_shards(task, train_docs, max(args.eval_docs, 8), work / f"tokens-{key}")
    eval_len = args.eval_len or args.seq_len
    row = {"name": args.name, "argv": argv, "task": task.describe(), "device": args.device,
           "uniform_alpha": uniform_first_token_mass(eval_len),
           "uniform_sink_eps0.3_pct": 100.0 * (uniform_first_token_mass(eval_len) > 0.3),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "arms": {}}
    for arm in args.arms.split(","):
        res = run_arm(args, arm, tokens, work)
        row["arms"][arm] = res
        print(f"[{args.name}] {arm}: sink@0.3 {res['sink_eps0.3']:.2f}% (uniform baseline "
              f"{row['uniform_sink_eps0.3_pct']:.0f}%, alpha {row['uniform_alpha']:.3f}), "
              f"kurtosis {res['kurtosis']:.1f}, max|act| {res['max_abs']:.2f}, val loss "
              f"{res['val_loss']:.4f}, wall {res['wall_s']:.0f} s, cpu {res['cpu_s']:.0f} s", flush=True)
    if {"softmax", "softpick"} <= set(row["arms"]):
        sm, sp = row["arms"]["softmax"], row["arms"]["softpick"]
        row["kurtosis_ratio"] = sm["kurtosis"] / sp["kurtosis"]
        row["max_abs_ratio"] = sm["max_abs"] / sp["max_abs"]
        row["meets_all"] = criteria(row)[1]
        print(f"[{args.name}] kurtosis ratio {row['kurtosis_ratio']:.2f}, max ratio "
              f"{row['max_abs_ratio']:.2f}, meets all: {row['meets_all']}", flush=True)
    with open(args.out, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
