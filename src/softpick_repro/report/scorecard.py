"""Assemble this run's result files into the paper comparison and the claims table."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..io import load_json
from .claims import ClaimInputs, evaluate_claims, write_claims
from .comparison import compare, load_published, write_comparison
from .published_claims import binomial_se_points
from .run_values import (RunInfo, _quant_parts, _scaled, attention_rows, collect, eval_rows,
                         masked_eval_rows, passkey_rows)

KINDS = ("eval", "attention_final", "attention_variant", "passkey", "masked_eval", "dead_heads", "summary")
DEAD_HEAD_EPS = 1e-6


def parse_entry(key: str, path: str) -> dict:
    """Input keys are "kind|seed|size|arm[|extra]" (extra: the quant of an eval, the ckpt of dead heads)."""
    parts = key.split("|")
    if len(parts) < 4 or parts[0] not in KINDS:
        raise ValueError(f"scorecard input key {key!r} is not kind|seed|size|arm[|extra] with kind in {KINDS}")
    return {"kind": parts[0], "seed": parts[1], "size": parts[2], "arm": parts[3],
            "extra": parts[4] if len(parts) > 4 else "", "path": path}


def run_values(entries: Iterable[dict], sizes: list[dict]) -> pd.DataFrame:
    by_name = {s["name"]: s for s in sizes}
    smallest = sizes[0]["paper_size"]
    rows: list[dict] = []
    for e in entries:
        size = by_name[e["size"]]
        info = RunInfo(e["size"], size["paper_size"], e["arm"], e["extra"] or "none")
        if e["kind"] == "eval":
            rows += eval_rows(e["path"], info, smallest_paper_size=smallest)
        elif e["kind"] == "attention_final":
            rows += attention_rows(e["path"], info, "table2", size["paper_size"])
        elif e["kind"] == "attention_variant":
            rows += attention_rows(e["path"], info, "table3", f"{size['paper_size']}-10k")
        elif e["kind"] == "passkey":
            rows += passkey_rows(e["path"], info)
        elif e["kind"] == "masked_eval":
            rows += masked_eval_rows(e["path"], info)
    frame = collect(rows)
    # several seeds of one run: the comparison shows their mean
    keys = ["table", "size", "arm", "task", "metric", "quant_method", "bits", "note"]
    return frame.groupby(keys, sort=False, as_index=False).agg(
        {**{c: "first" for c in frame.columns if c not in keys}, "value": "mean"})[frame.columns]


def _accuracy_se(metric: str, score_points: float, stderr, n_samples) -> float:
    """Standard error (points) of an accuracy: lm-eval's stderr, else binomial from the document
    count; nan for perplexities and when neither is known."""
    if metric not in ("acc", "acc_norm"):
        return math.nan
    if stderr is not None and math.isfinite(float(stderr)):
        return 100.0 * float(stderr)
    return binomial_se_points(score_points, int(n_samples)) if n_samples else math.nan


def claim_inputs(entries: Iterable[dict], sizes: list[dict]) -> ClaimInputs:
    """The claims' inputs from one seed's entries."""
    labels = {s["name"]: s["label"] for s in sizes}
    inp = ClaimInputs(sizes=[s["label"] for s in sizes],
                      paper_sizes={s["label"]: s["paper_size"] for s in sizes})
    smallest = sizes[0]["name"]
    for e in entries:
        label, arm = labels[e["size"]], e["arm"]
        if e["kind"] == "attention_final":
            inp.attention.setdefault(label, {})[arm] = load_json(e["path"])
        elif e["kind"] == "eval":
            method, bits = _quant_parts(e["extra"] or "none")
            for task, entry in load_json(e["path"])["tasks"].items():
                paper_task = entry.get("stands_in_for") or task
                metrics = entry["metrics"]
                for metric, value in metrics.items():
                    if metric not in ("acc", "acc_norm", "perplexity", "word_perplexity"):
                        continue
                    value = _scaled(metric, value)
                    se = _accuracy_se(metric, value, metrics.get(f"{metric}_stderr"), entry.get("n_samples"))
                    if method == "none":
                        key, scores, errors = (paper_task, metric), inp.benchmarks, inp.benchmark_se
                    else:
                        key, scores, errors = (method, bits, paper_task, metric), inp.quantized, inp.quantized_se
                    scores.setdefault(label, {}).setdefault(arm, {})[key] = value
                    errors.setdefault(label, {}).setdefault(arm, {})[key] = se
        elif e["kind"] == "summary":
            loss = load_json(e["path"]).get("final_val_loss")
            if loss is not None and math.isfinite(loss):
                inp.final_loss.setdefault(label, {})[arm] = float(loss)
        elif e["kind"] == "dead_heads" and arm == "softpick":
            record = load_json(e["path"])
            pct = next(b["percent_dead"] for b in record["by_eps"] if math.isclose(b["eps"], DEAD_HEAD_EPS))
            inp.dead_heads.setdefault(label, []).append((int(record["step"]), float(pct)))
        elif e["kind"] == "passkey" and e["size"] == smallest:
            inp.passkey[arm] = [(float(x["fraction"]), 100.0 * float(x["accuracy"]))
                                for x in load_json(e["path"])["lengths"]]
    return inp


def claim_inputs_by_seed(entries: Iterable[dict], sizes: list[dict]) -> list[ClaimInputs]:
    """One ClaimInputs per seed, in the order the seeds first appear."""
    by_seed: dict[str, list[dict]] = {}
    for e in entries:
        by_seed.setdefault(e["seed"], []).append(e)
    return [claim_inputs(group, sizes) for group in by_seed.values()]


def write_scorecard(inputs: dict[str, str], sizes: list[dict], rules: dict, published_csv: str | Path,
                    comparison_stem: str | Path, claims_stem: str | Path) -> None:
    entries = [parse_entry(key, path) for key, path in inputs.items()]
    comparison = compare(load_published(published_csv), run_values(entries, sizes))
    write_comparison(comparison, comparison_stem)
    write_claims(evaluate_claims(claim_inputs_by_seed(entries, sizes), rules), claims_stem)
