"""Atomic file writes, strict JSON with NaN/inf spelled as strings, and provenance records.

Every result file of the pipeline goes through here so that a crash never leaves a file
that looks complete (write to a temporary name in the same directory, then rename).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(value: Any) -> Any:
    """Replace float NaN/inf (also inside containers) by their string spellings."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _encode(value.item())
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dumps_json(obj: Any) -> str:
    return json.dumps(_encode(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def load_json(path: str | os.PathLike) -> Any:
    """Read strict JSON written by `dump_json`, turning "nan"/"inf"/"-inf" back into floats."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing JSON file: {path}")
    try:
        return _decode(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt JSON file {path}: {err}") from err


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dump_json(obj: Any, path: str | os.PathLike) -> None:
    """Write strict JSON atomically (NaN/inf spelled as strings)."""
    atomic_write_text(path, dumps_json(obj))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(cfg: Any) -> str:
    """Stable short hash of a JSON-serialisable config."""
    text = json.dumps(_encode(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


_LIBRARIES = ("torch", "triton", "transformers", "tokenizers", "lm_eval", "hqq",
              "bitsandbytes", "llmcompressor", "flash-linear-attention", "snakemake")


def bench_environment() -> dict:
    """Columns every benchmark CSV row carries: device name, driver, library versions, date."""
    import datetime
    import subprocess

    driver = ""
    try:
        import torch

        if torch.cuda.is_available():
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip()
    except (ImportError, OSError, subprocess.SubprocessError):
        driver = "unknown"
    return {"device_name": device_name(), "driver": driver, "torch": _version("torch") or "",
            "triton": _version("triton") or "", "fla": _version("flash-linear-attention") or "",
            "date": datetime.date.today().isoformat()}


def provenance(cfg: Any = None, **extra: Any) -> dict:
    """Record who/what produced a result: versions, git hash, device, config hash."""
    record = {
        "package": "softpick_repro",
        "package_version": _version("softpick_repro"),
        "git_hash": git_hash(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "device": device_name(),
    }
    if cfg is not None:
        record["config_hash"] = config_hash(cfg)
    record.update(extra)
    return record
