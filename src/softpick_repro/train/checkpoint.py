"""Resumable training checkpoints: atomic writes, `weights_only` loads, RNG capture.

A checkpoint is one file `checkpoint.pt` in the run's checkpoint directory (outside the
rule's declared outputs, so Snakemake's clean-up of a failed job keeps it). It is written
to a temporary sibling, fsynced, then renamed over the old one: until the rename the
previous checkpoint stays complete, and a kill at any moment leaves either the old or the
new file, never a partial one under the real name. Everything inside is tensors or plain
Python types so that `torch.load(weights_only=True)` can read it without unpickling code.
The state carries `content_sha256`, the digest of everything else in it
(`softpick_repro.integrity.content_digest`); a load recomputes it, so bytes flipped inside
the tensor data (which the zip container does not notice) stop the resume.

Test hook: with the environment variable `SOFTPICK_REPRO_TEST_KILL_IN_CKPT_WRITE=<step>`
the writer SIGKILLs its own process after the temporary file of that step is complete and
before the rename (used by the resume tests to simulate a crash during a write).
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
from pathlib import Path

import numpy as np
import torch

from softpick_repro.integrity import HASH_KEY, content_digest

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2  # 2: content_sha256 of the state
_KILL_ENV = "SOFTPICK_REPRO_TEST_KILL_IN_CKPT_WRITE"
_REQUIRED = ("format_version", "step", "model", "optimizer", "scheduler", "rng",
             "data_position", "metrics_rows", "train_config")


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (corrupt, truncated, incompatible)."""


def capture_rng() -> dict:
    """RNG states of torch (CPU and CUDA), numpy's legacy global RNG and `random`, as
    tensors and plain types (no numpy objects: those would need unpickling)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different GPU count: seed what exists from the first saved state
            for index in range(torch.cuda.device_count()):
                torch.cuda.set_rng_state(cuda_states[0], index)


def checkpoint_path(ckpt_dir: str | os.PathLike) -> Path:
    return Path(ckpt_dir) / CHECKPOINT_NAME


def remove_stale_temps(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by a write that was killed before its rename."""
    removed = []
    for tmp in Path(ckpt_dir).glob(f".{CHECKPOINT_NAME}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def save_checkpoint(ckpt_dir: str | os.PathLike, state: dict) -> Path:
    """Write `state` atomically as `ckpt_dir/checkpoint.pt`; return the path."""
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    state = {k: v for k, v in state.items() if k != HASH_KEY}
    state[HASH_KEY] = content_digest(state)
    path = checkpoint_path(ckpt_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if os.environ.get(_KILL_ENV) == str(state["step"]):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by `save_checkpoint` (weights_only: no code is unpickled).

    Raises CheckpointError naming the file when it is truncated, corrupt, or not ours.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # zip, pickle and EOF errors all mean the same thing here
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or truncated ({type(err).__name__}: {err}). "
            f"Not restarting from scratch: move or delete {path} to train anew.") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint file {path} does not hold a checkpoint dict")
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint file {path} lacks the entries {missing}")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint file {path} has format version {state['format_version']}, "
            f"this code reads version {FORMAT_VERSION}: move or delete {path} to train anew")
    recorded = state.pop(HASH_KEY, None)
    if recorded != content_digest(state):
        raise CheckpointError(
            f"checkpoint file {path} is corrupt: its contents do not match the {HASH_KEY} "
            f"recorded inside it. Not resuming from it: move or delete {path} to train anew.")
    return state
