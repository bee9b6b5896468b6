"""Packed training sequences read from the token shards of the tokenization stage.

Shards: flat arrays of token ids (documents already start with BOS and are concatenated),
one or more parts per split listed by `manifest.json`; `softpick_repro.data.token_shards`
reads them as one array.

Packing: window i is `tokens[i*T : i*T + T + 1]` for sequence length T, so adjacent
windows share one boundary token and every token after the first is a target exactly once;
there are `(n - 1) // T` windows and the tail that does not fill one is dropped. Inputs are
`window[:-1]`, targets `window[1:]`.

Order: training windows are visited epoch by epoch, each epoch a permutation drawn from
`numpy.random.default_rng([seed, epoch])`. The data position is the number of windows
consumed so far (a global sample index), so the order does not depend on how many
processes or accumulation steps share a batch, and resuming needs only that integer.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from softpick_repro.data import token_shards

def read_manifest(tokens_dir: str | os.PathLike) -> dict:
    """Load and check `manifest.json` of a token directory (`data.token_shards`)."""
    return token_shards.read_manifest(tokens_dir)


def open_shard(tokens_dir: str | os.PathLike, split: str, manifest: dict | None = None,
               verify: bool = True):
    """Every part of `split` as one flat read-only array (`data.token_shards.open_split`),
    sizes checked against the manifest and, with `verify`, contents against its sha256s."""
    return token_shards.open_split(tokens_dir, split, manifest, verify=verify)


class PackedWindows:
    """Fixed-length windows of a flat token array (see module docstring for the layout)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, vocab_size: int, name: str = "shard") -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.tokens, self.seq_len, self.vocab_size, self.name = tokens, seq_len, vocab_size, name
        self.num_windows = (len(tokens) - 1) // seq_len
        if self.num_windows < 1:
            raise ValueError(
                f"{name}: {len(tokens)} tokens are too few for one window of seq_len {seq_len} + 1")

    def batch(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """Stack the windows `indices` into an int64 tensor of shape [len(indices), seq_len + 1]."""
        step = self.seq_len
        rows = [np.asarray(self.tokens[i * step: i * step + step + 1], dtype=np.int64) for i in indices]
        out = torch.from_numpy(np.stack(rows))
        top = int(out.max())
        if top >= self.vocab_size:
            raise ValueError(f"{self.name}: token id {top} >= vocab_size {self.vocab_size}")
        return out


class WindowOrder:
    """Maps a global sample index to a training window: seeded permutation per epoch."""

    def __init__(self, num_windows: int, seed: int) -> None:
        self.num_windows, self.seed = num_windows, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._epoch = epoch
        return self._perm

    def windows(self, start: int, count: int) -> np.ndarray:
        """Window ids of global samples start, ..., start + count - 1 (may cross epochs)."""
        out = np.empty(count, dtype=np.int64)
        for j, sample in enumerate(range(start, start + count)):
            epoch, offset = divmod(sample, self.num_windows)
            out[j] = self._permutation(epoch)[offset]
        return out


def rank_slice(step_start: int, global_batch: int, micro_batch: int, accum: int,
               world_size: int, rank: int, micro: int) -> tuple[int, int]:
    """Global sample range (start, count) of micro-step `micro` on process `rank`.

    A global batch of samples [step_start, step_start + global_batch) is cut into
    world_size contiguous blocks (one per rank), each cut into `accum` micro-batches.
    """
    per_rank = micro_batch * accum
    assert per_rank * world_size == global_batch, "caller checks divisibility"
    return step_start + rank * per_rank + micro * micro_batch, micro_batch


def unigram_entropy(tokens: np.ndarray, vocab_size: int, max_tokens: int = 10_000_000) -> float:
    """Entropy in nats/token of the unigram distribution of (the first max_tokens of) a shard.

    The loss a model reaches by predicting token frequencies alone; a trained LM's loss must
    fall below it. Same unit as the training loss (natural log).
    """
    counts = np.bincount(np.asarray(tokens[:max_tokens], dtype=np.int64), minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
