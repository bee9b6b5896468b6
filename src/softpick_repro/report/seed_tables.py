"""One table from the same table of several seeds: numbers as mean ± std.

Each per-seed table (results/tables/seed_{seed}/<table>.csv) is written by the table's own
rule; this module combines them cell by cell. A cell that is a number in every seed and not
the same in all of them becomes "mean ± std" (sample std, with the decimals the tables
print); a cell equal in every seed (labels, configured values, a 0.00 everywhere) is kept
as it is. With one seed the table is unchanged. Tables of different shape or labels are an
error, not a guess.
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..io import atomic_write_text
from .tables import write_table

NON_FINITE = ("nan", "inf", "-inf")   # how the tables spell them (tables.format_value)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_COUNT_OF = re.compile(r"^(\d+) / (\d+)$")   # "k / N" cells, e.g. Table 5's dead heads of all heads


def _decimals(text: str) -> int:
    mantissa = text.split("e")[0].split("E")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def combine_cell(values: Sequence[str]) -> str:
    """mean ± std of one cell over seeds; an empty cell (not measured) is left out of both, and
    a cell with nan/inf in some seed lists the seeds' values ("inf / 3.20")."""
    if len(set(values)) == 1:
        return values[0]
    present = [v.strip() for v in values if v.strip()]
    counts = [_COUNT_OF.match(v) for v in present]
    if present and all(counts) and len({m.group(2) for m in counts}) == 1:
        return f"{combine_cell([m.group(1) + '.0' for m in counts])} / {counts[0].group(2)}"
    if not all(_NUMBER.match(v) or v in NON_FINITE for v in present):
        raise ValueError(f"cells differ between seeds but are not all numbers: {list(values)}")
    if any(v in NON_FINITE for v in present):
        return " / ".join(present)
    if len(present) == 1:
        return present[0]
    numbers = [float(v) for v in present]
    places = max(_decimals(v) for v in present)
    return f"{statistics.fmean(numbers):.{places}f} ± {statistics.stdev(numbers):.{places}f}"


def combine_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        raise ValueError("no per-seed tables to combine")
    first = frames[0]
    for i, frame in enumerate(frames[1:], start=2):
        if list(frame.columns) != list(first.columns) or frame.shape != first.shape:
            raise ValueError(f"the table of seed #{i} has columns {list(frame.columns)} and shape {frame.shape}, "
                             f"the first {list(first.columns)} and {first.shape}")
    out = first.copy()
    for col in first.columns:
        out[col] = [combine_cell([str(f[col].iloc[r]) for f in frames]) for r in range(len(first))]
    return out


def combine_seed_tables(csv_paths: Sequence[str | Path], seeds: Sequence[str], out_stem: str | Path,
                        log: str | Path | None = None) -> list[Path]:
    """Write out_stem.{csv,md,tex} from the per-seed CSVs (their .md beside them gives the
    caption). `log`: the job's log file, written directly (seeds, inputs, the files written)."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in csv_paths]
    md = Path(csv_paths[0]).with_suffix(".md").read_text().split("\n\n")[0].strip()
    caption = md if len(seeds) == 1 else f"{md} Mean ± std over seeds {', '.join(map(str, seeds))}."
    written = write_table(combine_frames(frames), out_stem, caption)
    if log:
        lines = [f"seeds {', '.join(map(str, seeds))}: {', '.join(map(str, csv_paths))}", *map(str, written)]
        atomic_write_text(log, "\n".join(lines) + "\n")
    return written
