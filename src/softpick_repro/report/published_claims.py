"""The paper's own published values as claim inputs, so the rules can be checked on them.

`data/paper/published_values.csv` is read as if it were a run at 340M and 1.8B: Table 2 for
the attention metrics, Table 1 for the unquantized scores, Tables 8-13 for the quantized
ones, Table 4 for passkey, and rows of table `text` for numbers the paper gives only in its
prose (their `note` names the passage). Standard errors of published accuracies are
binomial, from each task's document count (`claims.claim4.published_n_docs`). A table row
whose `note` flags an oddity of the printed tables is left out of the rules, with its note
as the reason; Table 5's `dead_head_mask_eps=` notes are keys, not flags.
"""
from __future__ import annotations

import math
from pathlib import Path

from .claims import ACCURACY, ClaimInputs
from .comparison import load_published
from .run_values import PAPER_PASSKEY_FRACTIONS, PAPER_PASSKEY_LENGTHS, QUANT_TABLES

PAPER_SIZES = ("340M", "1.8B")
KEY_NOTE_PREFIX = "dead_head_mask_eps="
QUANT_TABLE_SIZE = {f"table{n + (3 if size == '1.8B' else 0)}": size
                    for n in QUANT_TABLES.values() for size in PAPER_SIZES}


def binomial_se_points(score_points: float, n_docs: int) -> float:
    p = score_points / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / n_docs)


def is_oddity(row) -> bool:
    return row["table"] != "text" and bool(row["note"]) and not row["note"].startswith(KEY_NOTE_PREFIX)


def published_inputs(csv_path: str | Path, rules: dict) -> ClaimInputs:
    frame = load_published(csv_path)
    n_docs = rules["claim4"]["published_n_docs"]
    inp = ClaimInputs(sizes=list(PAPER_SIZES), paper_sizes={s: s for s in PAPER_SIZES})
    flagged = frame[frame.apply(is_oddity, axis=1)]
    for (table, note), group in flagged.groupby(["table", "note"]):
        inp.excluded.append(f"{len(group)} rows of {table}: {note}")
    frame = frame.drop(flagged.index)

    def se(task: str, metric: str, value: float) -> float:
        return binomial_se_points(value, n_docs[task]) if metric in ACCURACY and task in n_docs else math.nan

    for row in frame.itertuples():
        value = float(row.value)
        if row.table == "table2":
            inp.attention.setdefault(row.size, {}).setdefault(row.arm, {})[row.metric] = value
        elif row.table == "table1":
            inp.benchmarks.setdefault(row.size, {}).setdefault(row.arm, {})[(row.task, row.metric)] = value
            inp.benchmark_se.setdefault(row.size, {}).setdefault(row.arm, {})[(row.task, row.metric)] = \
                se(row.task, row.metric, value)
        elif row.table in QUANT_TABLE_SIZE:
            size, key = QUANT_TABLE_SIZE[row.table], (row.quant_method, row.bits, row.task, row.metric)
            inp.quantized.setdefault(size, {}).setdefault(row.arm, {})[key] = value
            inp.quantized_se.setdefault(size, {}).setdefault(row.arm, {})[key] = se(row.task, row.metric, value)
        elif row.table == "table4" and row.size == PAPER_SIZES[0]:
            length = int(row.metric.split("@")[1])
            fraction = PAPER_PASSKEY_FRACTIONS[PAPER_PASSKEY_LENGTHS.index(length)]
            inp.passkey.setdefault(row.arm, []).append((fraction, value))
        elif row.table == "text" and row.metric == "final_train_loss_abs_gap":
            inp.loss_gap[row.size] = (value, f"the paper's text ({row.note})")
    return inp
