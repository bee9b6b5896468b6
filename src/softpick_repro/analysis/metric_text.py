"""The text the attention metrics are measured on: fixed-length token windows.

Protocol (SOFTPICK.md, "Protocol details"): `num_samples` sequences of `seq_len` tokens,
each the start of one document (BOS first, so position 0 is the BOS token the sink forms on),
truncated, never padded.

Two sources:
- `val_shard`: the pipeline's own validation shard (flat ids, BOS before each document).
  Documents with at least `seq_len` tokens are used first, truncated; only when there are
  not enough of them do windows start at the BOS of shorter documents and run on into the
  following ones (packed, as in training). The choice is deterministic: candidates are taken
  evenly spaced over the shard. The counts of both kinds are reported.
- `slimpajama`: the paper's text, `Phando/SlimPajama-val-sampled`, streamed with `datasets`
  from the hub or from local files in its format (config/paper_offline.yaml); the first
  `num_samples` documents with at least `seq_len` tokens (BOS prepended), truncated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from softpick_repro.io import load_json


class MetricTextError(ValueError):
    """The requested windows cannot be cut from the available text."""


def _evenly(candidates: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        return candidates[:0]
    idx = np.linspace(0, len(candidates) - 1, num=k).round().astype(np.int64)
    return candidates[idx]


def select_windows(tokens: np.ndarray, bos_id: int, seq_len: int,
                   num_samples: int) -> tuple[np.ndarray, dict]:
    """Cut `num_samples` windows `[num_samples, seq_len]` (int64) from a flat id array.

    Every window starts at a BOS; see the module docstring for the order of preference.
    Returns the windows and a record of how they were chosen.
    """
    if seq_len < 1 or num_samples < 1:
        raise MetricTextError(f"seq_len and num_samples must be >= 1, got {seq_len}, {num_samples}")
    tokens = np.asarray(tokens)
    starts = np.flatnonzero(tokens == bos_id)
    if starts.size == 0:
        raise MetricTextError(f"the token shard holds no BOS id {bos_id}: not a document stream")
    ends = np.append(starts[1:], tokens.size)
    fits = starts + seq_len <= tokens.size
    full = starts[fits & (ends - starts >= seq_len)]
    packed = starts[fits & (ends - starts < seq_len)]
    if full.size + packed.size < num_samples:
        raise MetricTextError(
            f"the validation shard ({tokens.size:,} tokens, {starts.size:,} documents) yields "
            f"only {full.size + packed.size} windows of {seq_len} tokens starting at a document, "
            f"fewer than metrics.num_samples={num_samples}: lower num_samples or seq_len")
    n_full = min(num_samples, full.size)
    chosen = np.sort(np.concatenate([_evenly(full, n_full),
                                     _evenly(packed, num_samples - n_full)]))
    windows = np.stack([np.asarray(tokens[s:s + seq_len], dtype=np.int64) for s in chosen])
    info = {"source": "val_shard", "full_documents": int(n_full),
            "packed_windows": int(num_samples - n_full),
            "documents_in_shard": int(starts.size), "tokens_in_shard": int(tokens.size)}
    return windows, info


def val_shard_windows(manifest_path: str | Path, seq_len: int,
                      num_samples: int) -> tuple[np.ndarray, dict]:
    """Windows from the validation split of the token directory of `manifest_path` (every
    shard, read as one array; dtype and BOS id from the manifest)."""
    from softpick_repro.data.token_shards import open_split

    manifest_path = Path(manifest_path)
    manifest = load_json(manifest_path)
    if "bos_id" not in manifest:
        raise MetricTextError(f"{manifest_path} lacks the key 'bos_id'")
    tokens = open_split(manifest_path.parent, "val", manifest)
    windows, info = select_windows(tokens, int(manifest["bos_id"]), seq_len, num_samples)
    info["shard"] = tokens.name
    return windows, info


def slimpajama_windows(tokenizer, seq_len: int, num_samples: int, *,
                       name: str = "Phando/SlimPajama-val-sampled", config: str | None = None,
                       split: str = "validation", max_documents: int = 1_000_000,
                       text_column: str = "text", data_files=None) -> tuple[np.ndarray, dict]:
    """Windows from the paper's metric text, streamed (BOS + document ids, truncated): the hub
    dataset, or local files of it (`data_files`, builder `name` e.g. parquet) by the same call."""
    from softpick_repro.data.corpus import open_stream

    bos = tokenizer.bos_token_id
    if bos is None:
        raise MetricTextError("the tokenizer has no BOS token; the sink metrics need one")
    stream = open_stream(name, config, data_files=data_files, split=split, text_column=text_column,
                         key="metrics.slimpajama")
    rows, seen = [], 0
    for seen, example in enumerate(stream, start=1):
        text = example.get(text_column)
        if not isinstance(text, str) or not text.strip():
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: seq_len - 1]
        if len(ids) + 1 >= seq_len:
            rows.append([bos, *ids])
        if len(rows) == num_samples or seen >= max_documents:
            break
    if len(rows) < num_samples:
        raise MetricTextError(f"{name}:{split} gave only {len(rows)} documents of >= {seq_len} "
                              f"tokens in {seen} read; need metrics.num_samples={num_samples}")
    info = {"source": "slimpajama", "dataset": name, "config": config, "split": split,
            "full_documents": len(rows), "packed_windows": 0, "documents_read": seen}
    return np.asarray(rows, dtype=np.int64), info


def encode_text(tokenizer, text: str) -> tuple[list[int], list[str]]:
    """BOS + the ids of `text` and one display string per token (for map axis labels)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        raise MetricTextError("the tokenizer has no BOS token; the sink metrics need one")
    ids = [bos, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    labels = [tokenizer.decode([i]) for i in ids]
    return ids, labels
