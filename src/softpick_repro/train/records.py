"""Files a run writes as it goes: the per-step metrics CSV and weight snapshots.

Snapshots are safetensors files whose metadata (str -> str) holds JSON: format tag, step,
tokens seen, arm, preset, model config, training config, config hash, and the tensors'
content digest (`softpick_repro.integrity`). No wall-clock value goes in, so identical runs
write byte-identical snapshots.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from softpick_repro.io import atomic_write_text

from .checkpoint import CheckpointError

METRICS_HEADER = ("step", "tokens", "loss", "grad_norm", "lr", "tokens_per_s", "skipped", "val_loss")
SNAPSHOT_FORMAT = "softpick_repro.snapshot/1"


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    return repr(float(value))  # shortest text that reads back to the same float


class MetricsCSV:
    """The live per-step CSV in the checkpoint directory: appended and flushed every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = None

    def start_fresh(self) -> None:
        atomic_write_text(self.path, ",".join(METRICS_HEADER) + "\n")

    def truncate(self, rows: int) -> None:
        """Keep the header and the first `rows` rows (those covered by the checkpoint)."""
        if not self.path.exists():
            raise CheckpointError(
                f"checkpoint expects {rows} rows in {self.path}, but the file is missing")
        lines = self.path.read_text().splitlines(keepends=True)
        if not lines or lines[0].strip() != ",".join(METRICS_HEADER):
            raise CheckpointError(f"{self.path}: unexpected header {lines[:1]!r}")
        if len(lines) - 1 < rows:
            raise CheckpointError(
                f"{self.path} holds {len(lines) - 1} rows but the checkpoint covers {rows} steps")
        if not lines[rows].endswith("\n") and rows > 0:
            raise CheckpointError(f"{self.path}: row {rows} is incomplete")
        atomic_write_text(self.path, "".join(lines[: rows + 1]))

    def append(self, row: dict) -> None:
        if self.handle is None:
            self.handle = open(self.path, "a", buffering=1)
        self.handle.write(",".join(row[key] for key in METRICS_HEADER) + "\n")
        self.handle.flush()

    def sync(self) -> None:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def save_snapshot(state: dict, path: Path, metadata: dict) -> None:
    """Model weights (a state dict) + JSON metadata as one safetensors file, written atomically."""
    from softpick_repro.integrity import save_safetensors

    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors metadata is str -> str: every value but the format tag is JSON text.
    meta = {key: value if key == "format" else json.dumps(value) for key, value in metadata.items()}
    save_safetensors(state, path, meta)


def compare_weight_files(got_dir: Path, want_dir: Path) -> list[str]:
    """Differences between two weights/ directories, tensor by tensor (exact equality)."""
    from safetensors.torch import load_file

    import torch

    got_dir, want_dir = Path(got_dir), Path(want_dir)
    names = sorted(p.name for p in want_dir.glob("*.safetensors"))
    problems = [] if names else [f"no weight files in {want_dir}"]
    for name in names:
        if not (got_dir / name).exists():
            problems.append(f"{got_dir / name} is missing")
            continue
        got, want = load_file(str(got_dir / name)), load_file(str(want_dir / name))
        if set(got) != set(want):
            problems.append(f"{name}: tensor names differ ({sorted(set(got) ^ set(want))})")
            continue
        unequal = [k for k in want if not torch.equal(got[k], want[k])]
        if unequal:
            problems.append(f"{name}: {len(unequal)} of {len(want)} tensors differ, e.g. {unequal[0]}")
    return problems
