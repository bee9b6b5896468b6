"""Benchmark tables of the paper from the evaluation JSONs (results/{size}/{arm}/seed_{seed}/eval/{quant}.json).

- Table 1: main arms at every size, unquantized; columns per size: softmax, softpick, Delta.
- Table 7: every arm trained in full at the smallest size (main + appendix arms), unquantized.
- Tables 8-13: quantized main arms, one table per (size, method); columns per bit width:
  softmax, softpick, Delta. Numbering follows the paper: the size standing in for 340M gets
  8 (bnb), 9 (gptq), 10 (hqq); the one standing in for 1.8B gets 11, 12, 13.

Rows are task x metric (the metrics of `evaluate.tasks.TABLE_METRICS`), in the order the
tasks appear in the results. Scores: accuracies x100 with 2 decimals, perplexities as they
are (2 decimals); Delta = softpick - softmax on those numbers; NaN/inf shown as "nan"/"inf".
A row, column or table the config does not produce is absent; a single missing cell is empty.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from softpick_repro.evaluate.tasks import TABLE_METRICS
from softpick_repro.io import load_json

from .tables import format_value, write_table

QUANT_METHODS = ("bnb", "gptq", "hqq")  # paper order of Tables 8-10 / 11-13
QUANT_TABLE_BASE = {"340M": 8, "1.8B": 11}
METHOD_LABELS = {"bnb": "bitsandbytes", "gptq": "GPTQ", "hqq": "HQQ"}
DELTA = "Delta"


def _parse_quant(quant: str) -> tuple[str | None, int | None]:
    from softpick_repro.evaluate.quantize import parse_quant

    spec = parse_quant(quant)
    return spec.method, spec.bits


def task_label(task: str, stands_in_for: str | None) -> str:
    """Embedded sets show the paper task they replace: 'social_iqa (arc_easy)'."""
    return task if not stands_in_for or stands_in_for == task else f"{task} ({stands_in_for})"


def load_eval_records(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long frame: size, arm, quant, method, bits, task, stands_in_for, kind, metric, value.

    Only the table metrics of each task kind are kept; values are lm-eval's (acc in [0, 1]).
    """
    rows = []
    for path in paths:
        rec = load_json(path)
        for key in ("size", "arm", "quant", "tasks"):
            if key not in rec:
                raise ValueError(f"{path}: evaluation record lacks {key!r}")
        method, bits = _parse_quant(rec["quant"])
        for task, res in rec["tasks"].items():
            for metric in TABLE_METRICS[res["kind"]]:
                if metric not in res["metrics"]:
                    raise ValueError(f"{path}: task {task} has no metric {metric!r}")
                value = res["metrics"][metric]
                rows.append({"size": rec["size"], "arm": rec["arm"], "quant": rec["quant"],
                             "method": method, "bits": bits, "task": task,
                             "stands_in_for": res.get("stands_in_for"), "kind": res["kind"],
                             "metric": metric,
                             "value": math.nan if value is None else float(value)})
    columns = ["size", "arm", "quant", "method", "bits", "task", "stands_in_for", "kind",
               "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def table_score(metric: str, value: float) -> float:
    """Accuracies x100; perplexities unchanged."""
    return value * 100.0 if metric.startswith("acc") else value


def _delta(a: float | None, b: float | None) -> float | None:
    """softpick (b) - softmax (a); inf - inf is nan in float arithmetic, as it should be."""
    if a is None or b is None:
        return None
    return b - a


def _row_keys(frame: pd.DataFrame) -> list[tuple[str, str | None, str]]:
    """(task, stands_in_for, metric) in first-appearance task order, kind's metric order."""
    keys, seen = [], set()
    for task, sub in frame.groupby("task", sort=False):
        kind, stand = sub["kind"].iloc[0], sub["stands_in_for"].iloc[0]
        for metric in TABLE_METRICS[kind]:
            if metric in set(sub["metric"]) and (task, metric) not in seen:
                seen.add((task, metric))
                keys.append((task, stand, metric))
    return keys


def comparison_frame(frame: pd.DataFrame, group_field: str, groups: Sequence[tuple[object, str]],
                     arms: Sequence[str], delta: bool = True) -> pd.DataFrame:
    """String table: rows task x metric; columns '<group label> <arm>' per group (+ Delta).

    `frame`: rows of `load_eval_records` already restricted to one table; `groups`: (value
    of `group_field`, label) in column order. A group or arm with no data gets no column;
    Delta (softpick - softmax) needs both arms in the group.
    """
    if frame.empty:
        raise ValueError("no evaluation results for this table")
    cell = {(r.task, r.metric, r[group_field], r.arm): table_score(r.metric, r.value)
            for _, r in frame.iterrows()}
    columns: list[tuple[str, object, str]] = []  # (header, group value, arm or DELTA)
    present = set(zip(frame[group_field], frame["arm"]))
    for value, label in groups:
        arms_here = [a for a in arms if (value, a) in present]
        for arm in arms_here:
            columns.append((f"{label} {arm}".strip(), value, arm))
        if delta and {"softmax", "softpick"} <= set(arms_here):
            columns.append((f"{label} {DELTA}".strip(), value, DELTA))
    if not columns:
        raise ValueError(f"none of the arms {list(arms)} has results for the groups "
                         f"{[g for g, _ in groups]}")
    records = []
    for task, stand, metric in _row_keys(frame):
        row = {"task": task_label(task, stand), "metric": metric}
        for header, value, arm in columns:
            if arm == DELTA:
                score = _delta(cell.get((task, metric, value, "softmax")),
                               cell.get((task, metric, value, "softpick")))
            else:
                score = cell.get((task, metric, value, arm))
            row[header] = format_value(score)
        records.append(row)
    return pd.DataFrame(records, columns=["task", "metric", *[c[0] for c in columns]])


def table1_frame(frame: pd.DataFrame, sizes: Sequence[tuple[str, str]],
                 arms: Sequence[str] = ("softmax", "softpick")) -> pd.DataFrame:
    """Table 1: unquantized main arms, columns per size (`sizes`: (name, label))."""
    sub = frame[(frame["quant"] == "none") & frame["arm"].isin(arms)]
    return comparison_frame(sub, "size", sizes, arms)


def table7_frame(frame: pd.DataFrame, size: str, arms: Sequence[str]) -> pd.DataFrame:
    """Table 7: unquantized arms at one size, one column per arm (no Delta)."""
    sub = frame[(frame["quant"] == "none") & (frame["size"] == size) & frame["arm"].isin(arms)]
    return comparison_frame(sub, "size", [(size, "")], arms, delta=False)


def quant_frame(frame: pd.DataFrame, size: str, method: str, bits: Sequence[int],
                arms: Sequence[str] = ("softmax", "softpick")) -> pd.DataFrame:
    """Tables 8-13: one size and method, columns per bit width ('2-bit softmax', ...)."""
    sub = frame[(frame["size"] == size) & (frame["method"] == method) & frame["arm"].isin(arms)]
    return comparison_frame(sub, "bits", [(b, f"{b}-bit") for b in bits], arms)


def quant_table_number(paper_size: str, method: str) -> int:
    if paper_size not in QUANT_TABLE_BASE:
        raise ValueError(f"unknown paper size {paper_size!r}; expected one of {list(QUANT_TABLE_BASE)}")
    return QUANT_TABLE_BASE[paper_size] + QUANT_METHODS.index(method)


def benchmark_table_stems(sizes: Sequence[Mapping], runs: Mapping, methods: Mapping[str, Sequence[int]]
                          ) -> dict[str, dict]:
    """Table stem (e.g. 'table08_quantization_bnb') -> what goes into it, for a config.

    `sizes`: the config's size entries (name, label, paper_size), smallest first; `runs`:
    the config's runs section; `methods`: quantization.methods. Each spec holds `kind`
    (table1 | table7 | quant) and the (size, arm, quant) triples it reads.
    """
    main = list(runs["main_arms"])
    specs: dict[str, dict] = {
        "table01_benchmarks": {"kind": "table1", "inputs": [
            (s["name"], arm, "none") for s in sizes for arm in main]},
    }
    appendix = [a for a in runs["appendix_arms"] if a not in main]
    if appendix:
        smallest = sizes[0]["name"]
        specs["table07_benchmarks_appendix"] = {"kind": "table7", "size": smallest, "arms": main + appendix,
                                                "inputs": [(smallest, a, "none") for a in main + appendix]}
    paper_sizes = [s["paper_size"] for s in sizes]
    if len(set(paper_sizes)) != len(paper_sizes):
        raise ValueError(f"two sizes stand in for the same paper size {paper_sizes}: "
                         "Tables 8-13 need one size per paper size")
    for s in sizes:
        for method in QUANT_METHODS:
            bits = list(methods.get(method, []))
            if not bits:
                continue
            number = quant_table_number(s["paper_size"], method)
            specs[f"table{number:02d}_quantization_{method}"] = {
                "kind": "quant", "size": s["name"], "method": method, "bits": bits,
                "inputs": [(s["name"], arm, f"{method}{b}") for arm in main for b in bits]}
    return specs


def _caption(spec: dict, labels: Mapping[str, str]) -> str:
    if spec["kind"] == "table1":
        return ("Table 1: 0-shot benchmarks, softmax vs softpick (accuracies x100, perplexities "
                "as they are; Delta = softpick - softmax).")
    if spec["kind"] == "table7":
        return (f"Table 7: 0-shot benchmarks of the fully trained arms at {labels[spec['size']]} "
                "(accuracies x100, perplexities as they are).")
    return (f"Quantized 0-shot benchmarks, {labels[spec['size']]}, {METHOD_LABELS[spec['method']]} "
            "(accuracies x100, perplexities as they are; Delta = softpick - softmax).")


def write_benchmark_tables(eval_paths: Iterable[str | Path], sizes: Sequence[Mapping], runs: Mapping,
                           methods: Mapping[str, Sequence[int]], out_dir: str | Path) -> list[Path]:
    """Write every table of `benchmark_table_stems` as CSV/MD/TeX into `out_dir`."""
    frame = load_eval_records(eval_paths)
    labels = {s["name"]: s["label"] for s in sizes}
    main = list(runs["main_arms"])
    written = []
    for stem, spec in benchmark_table_stems(sizes, runs, methods).items():
        if spec["kind"] == "table1":
            table = table1_frame(frame, [(s["name"], s["label"]) for s in sizes], main)
        elif spec["kind"] == "table7":
            table = table7_frame(frame, spec["size"], spec["arms"])
        else:
            table = quant_frame(frame, spec["size"], spec["method"], spec["bits"], main)
        written += write_table(table, Path(out_dir) / stem, _caption(spec, labels))
    return written
