"""Synthetic token shards in the tokenization stage's format, for tests and smoke runs.

Documents are drawn from a fixed random first-order Markov chain over ids 3..vocab-1
(ids 0/1/2 are <unk>/<s>/</s>), each preceded by BOS, so a model can learn them and the
loss falls well below the unigram entropy within tens of steps.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from softpick_repro.io import dump_json, sha256_file

BOS_ID, EOS_ID = 1, 2


def _documents(rng: np.random.Generator, vocab_size: int, n_tokens: int, branching: int) -> np.ndarray:
    symbols = vocab_size - 3
    successors = rng.integers(0, symbols, size=(symbols, branching))
    out, state = [], 0
    while len(out) < n_tokens:
        out.append(BOS_ID)
        state = int(rng.integers(symbols))
        for _ in range(int(rng.integers(16, 96))):
            out.append(state + 3)
            state = int(successors[state, rng.integers(branching)])
    return np.asarray(out[:n_tokens])


def write_synthetic_shards(out_dir: str | os.PathLike, *, vocab_size: int = 64,
                           train_tokens: int = 20_000, val_tokens: int = 4_000, seed: int = 0,
                           branching: int = 2, dtype: str = "uint16") -> Path:
    """Write train.bin, val.bin and manifest.json into out_dir; return out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = _documents(rng, vocab_size, train_tokens + val_tokens, branching)
    splits = {"train": tokens[:train_tokens], "val": tokens[train_tokens:]}
    for split, array in splits.items():
        array.astype(dtype).tofile(out_dir / f"{split}.bin")
    dump_json({"format": "flat token ids, BOS before each document, no EOS", "dtype": dtype,
               "vocab_size": vocab_size, "bos_id": BOS_ID, "eos_id": EOS_ID,
               "tokens": {split: int(len(a)) for split, a in splits.items()},
               "sha256": {split: sha256_file(out_dir / f"{split}.bin") for split in splits},
               "source": f"synthetic markov chain (seed {seed}, branching {branching})"},
              out_dir / "manifest.json")
    return out_dir


def micro_train_config(**overrides) -> dict:
    """TrainConfig fields of a microscopic CPU run (hidden 64, 2 layers, seq 32): a few ms a step."""
    values = dict(preset="micro-s", arm="softpick", seq_len=32, global_batch=4, micro_batch=2,
                  steps=20, lr=3e-3, warmup_steps=3, ckpt_every=5, val_every=10, val_batches=2,
                  threads=1, max_consecutive_skips=3)
    values.update(overrides)
    return values
