"""Tables 2 and 3: sink rate, hidden-state kurtosis/min/max and attention sparsity.

Table 2: one row per metric, one column per (size, arm) of the final models.
Table 3: one row per arm (the smallest size, every arm taken at the same early step, 10% of
the schedule in the paper), one
column per metric. Values come from the metrics JSON of `analysis.attention_run`; sink rate
and sparsity are percentages, kurtosis is Pearson's (a Gaussian gives 3). Two decimals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from softpick_repro.analysis.metrics import uniform_first_token_mass
from softpick_repro.io import load_json

from .tables import format_value, write_table

# (key in the metrics JSON, row/column label); the sink-rate keys follow the thresholds used.
VALUE_METRICS = (("kurtosis", "kurtosis"), ("min_activation", "min activation"),
                 ("max_activation", "max activation"), ("sparsity_pct", "sparsity (%)"))
REQUIRED = ("sink_thresholds", "kurtosis", "min_activation", "max_activation", "sparsity_pct",
            "dtype", "num_samples", "seq_len")


def load_metrics(path: str | Path) -> dict:
    record = load_json(path)
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{path} is not an attention-metrics file: lacks {missing}")
    return record


def metric_rows(record: dict) -> list[tuple[str, str]]:
    """(JSON key, label) of every reported metric, sink rates first (eps ascending)."""
    sinks = [(f"sink_rate_eps{eps:g}", f"sink rate eps={eps:g} (%)")
             for eps in sorted(record["sink_thresholds"])]
    return sinks + list(VALUE_METRICS)


def _protocol(records: list[dict]) -> str:
    parts = sorted({f"{r['num_samples']} sequences of {r['seq_len']} tokens, {r['dtype']} maps"
                    for r in records})
    return "; ".join(parts) + "; " + _uniform_baseline(records)


def _uniform_baseline(records: list[dict]) -> str:
    """What uniform attention alone would score: the floor a sink rate is read against."""
    lengths = sorted({int(r["seq_len"]) for r in records if isinstance(r["seq_len"], int)})
    return "; ".join(f"uniform attention over {t} tokens gives alpha = {uniform_first_token_mass(t):.3f}, "
                     f"a sink rate of 100% at eps below it and 0% above" for t in lengths)


def table2_frame(records: Mapping[tuple[str, str], dict]) -> pd.DataFrame:
    """records: (size label, arm) -> metrics. Rows = metrics, columns = size x arm."""
    if not records:
        raise ValueError("Table 2 needs at least one metrics record")
    rows = metric_rows(next(iter(records.values())))
    data = {"metric": [label for _, label in rows]}
    for (size, arm), rec in records.items():
        data[f"{size} {arm}"] = [format_value(rec.get(key)) for key, _ in rows]
    return pd.DataFrame(data)


def table3_frame(records: Mapping[str, dict]) -> pd.DataFrame:
    """records: arm -> metrics. Rows = arms, columns = metrics."""
    if not records:
        raise ValueError("Table 3 needs at least one metrics record")
    rows = metric_rows(next(iter(records.values())))
    out = [{"arm": arm, **{label: format_value(rec.get(key)) for key, label in rows}}
           for arm, rec in records.items()]
    return pd.DataFrame(out)


def write_table2(inputs: Mapping[tuple[str, str], str | Path], stem: str | Path) -> list[Path]:
    """inputs: (size label, arm) -> metrics JSON path, in column order."""
    records = {key: load_metrics(path) for key, path in inputs.items()}
    caption = ("Table 2: attention sink rate, hidden-state kurtosis (Pearson), min/max "
               "activation and attention sparsity of the final models "
               f"({_protocol(list(records.values()))}; the paper does not state Table 2's "
               "setting, so Table 3's protocol is used).")
    return write_table(table2_frame(records), stem, caption)


def write_table3(inputs: Mapping[str, str | Path], stem: str | Path, size_label: str,
                 step: int, fraction: float = 0.1) -> list[Path]:
    """inputs: arm -> metrics JSON path (all at `step` of the size labelled `size_label`)."""
    records = {arm: load_metrics(path) for arm, path in inputs.items()}
    caption = (f"Table 3: attention metrics of every arm at {size_label}, step {step} "
               f"({fraction:.0%} of the schedule) ({_protocol(list(records.values()))}).")
    return write_table(table3_frame(records), stem, caption)
