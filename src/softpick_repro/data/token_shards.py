"""The token-shard layout, and the one reader every consumer of token ids goes through.

Layout (written by `softpick_repro.tokenize`): the tokenize stage runs `data.shards` independent
jobs; job k writes `shards/<k:05d>/{train,val}.bin` (flat ids, BOS before each document) and a
`part.json` last; one gather job writes `manifest.json` listing every part in shard order:

    {"dtype", "vocab_size", "bos_id", "eos_id", "tokens": {"train", "val"} (totals),
     "shards": [{"dir": "shards/00000", "tokens": {"train", "val"}, ...}, ...], ...}

The embedded default is the case of one shard. `open_split` memory-maps every part of a split
and presents them, in order, as one read-only flat array (`TokenStream`): nothing is copied,
so the trainer, dead heads, the `val_shard` metric text and GPTQ calibration read ~210 GB of
paper-scale shards exactly as they read the default's few MB. A manifest in the older one-file
spelling (`"files": {"train": "train.bin", ...}`, or no file list at all: `train.bin` and
`val.bin`, as `train.synthetic` writes) is read as one shard in the manifest's own directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from softpick_repro.io import load_json

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
SPLITS = ("train", "val")


def read_manifest(tokens_dir: str | os.PathLike) -> dict:
    """Load and check `manifest.json` of a token directory."""
    path = Path(tokens_dir) / "manifest.json"
    manifest = load_json(path)
    for key in ("dtype", "vocab_size", "tokens"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks the key {key!r}")
    if manifest["dtype"] not in DTYPES:
        raise ValueError(f"{path}: dtype must be one of {sorted(DTYPES)}, got {manifest['dtype']!r}")
    return manifest


def split_files(tokens_dir: str | os.PathLike, split: str,
                manifest: dict) -> list[tuple[Path, int | None, str | None]]:
    """(file, expected token count or None, recorded sha256 or None) of every part of `split`,
    in shard order."""
    tokens_dir = Path(tokens_dir)
    if "shards" in manifest:
        return [(tokens_dir / part["dir"] / f"{split}.bin", part["tokens"].get(split),
                 part.get("sha256", {}).get(split)) for part in manifest["shards"]]
    files = manifest.get("files", {"train": "train.bin", "val": "val.bin"})
    return [(tokens_dir / files[split], manifest.get("tokens", {}).get(split),
             manifest.get("sha256", {}).get(split))]


class TokenStream:
    """Several memory-mapped token files read as one flat, read-only array.

    Supports `len`, integer indexing, slices with step 1 (the reads every consumer makes:
    windows, prefixes) and `numpy.asarray` (materialises everything: for the small val split).
    """

    def __init__(self, parts: list[np.ndarray], dtype, name: str = "tokens") -> None:
        self.parts = [p for p in parts if len(p)]
        self.dtype = np.dtype(dtype)
        self.name = name
        self.ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)
        self.starts = self.ends - np.array([len(p) for p in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    @property
    def size(self) -> int:
        return len(self)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty(0, dtype=self.dtype)
        first = int(np.searchsorted(self.ends, start, side="right"))
        pieces = []
        i = first
        while i < len(self.parts) and self.starts[i] < stop:
            lo = max(start, int(self.starts[i])) - int(self.starts[i])
            hi = min(stop, int(self.ends[i])) - int(self.starts[i])
            pieces.append(self.parts[i][lo:hi])
            i += 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError(f"{self.name}: only step-1 slices are supported")
            return self._read(start, stop)
        index = int(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {key} out of range for {len(self)} tokens")
        return self._read(index, index + 1)[0]

    def __array__(self, dtype=None, copy=None):
        whole = self._read(0, len(self))
        return whole.astype(dtype) if dtype is not None else np.asarray(whole)

    # Elementwise comparisons materialise the stream (fine for the val split and tests;
    # the training readers only slice).
    __hash__ = None

    def __eq__(self, other):
        return np.asarray(self) == other

    def __ne__(self, other):
        return np.asarray(self) != other


def open_split(tokens_dir: str | os.PathLike, split: str, manifest: dict | None = None,
               verify: bool = True) -> TokenStream:
    """Every part of `split` as one TokenStream, each file's size checked against the manifest
    and, with `verify`, its content against the part's recorded sha256 (once per process and
    file: `integrity.verify_shard`; per-part hashes, so a job hashes only the splits it opens)."""
    from softpick_repro.integrity import IntegrityError, verify_shard

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest = manifest or read_manifest(tokens_dir)
    dtype = np.dtype(DTYPES[manifest["dtype"]])
    parts = []
    for path, expected, sha256 in split_files(tokens_dir, split, manifest):
        if not path.exists():
            raise FileNotFoundError(f"missing token shard: {path}")
        size = path.stat().st_size
        if size % dtype.itemsize:
            raise ValueError(f"{path}: {size} bytes is not a whole number of {manifest['dtype']} tokens")
        count = size // dtype.itemsize
        if expected is not None and int(expected) != count:
            raise ValueError(f"{path}: holds {count} tokens but manifest.json says {expected}")
        if verify:
            if sha256 is None:
                raise IntegrityError(f"{Path(tokens_dir) / 'manifest.json'} records no sha256 for "
                                     f"{path}; rerun the tokenize rule")
            verify_shard(path, sha256)
        if count:
            parts.append(np.memmap(path, dtype=dtype, mode="r", shape=(count,)))
    stream = TokenStream(parts, dtype, name=f"{Path(tokens_dir)}/{split}")
    if len(stream) == 0:
        raise ValueError(f"{tokens_dir}: the {split} split holds no tokens")
    return stream
