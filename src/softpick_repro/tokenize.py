"""Tokenizer stage (train a byte-level BPE, or load the paper's tokenizer) and the
tokenization stage (corpus -> flat binary token shards + a JSON manifest).

Shard format: one flat array of token ids per split (`train.bin`, `val.bin`), dtype uint16
when every id fits, else uint32; each document is preceded by BOS and no EOS is appended
(the paper's packing, SOFTPICK.md protocol details); the trainer cuts consecutive windows.
The manifest is written last, so a killed job never leaves a manifest that looks complete.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .io import atomic_dir, dump_json, provenance, sha256_file

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 as in the paper's Llama tokenizer
MIN_BPE_VOCAB = len(SPECIAL_TOKENS) + 256 + 1


class TokenizationError(RuntimeError):
    pass


def is_validation(doc: str, val_fraction: float) -> bool:
    """Deterministic split by content hash: stable across runs, machines and corpus order."""
    digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


def train_bpe_tokenizer(docs: Iterable[str], vocab_size: int, min_frequency: int,
                        out_dir: str | Path, val_fraction: float = 0.0) -> int:
    """Train a byte-level BPE on the training split of `docs`; save a transformers tokenizer.

    Returns the number of documents it was trained on.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_BPE_VOCAB:
        raise TokenizationError(
            f"tokenizer.vocab_size={vocab_size} is too small: a byte-level BPE needs "
            f"{len(SPECIAL_TOKENS)} special tokens + 256 byte symbols + 1 merge (>= {MIN_BPE_VOCAB})")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    count = 0

    def training_docs() -> Iterator[str]:
        nonlocal count
        for doc in docs:
            if val_fraction and is_validation(doc, val_fraction):
                continue
            count += 1
            yield doc

    tokenizer.train_from_iterator(training_docs(), trainer=trainer)
    if count == 0:
        raise TokenizationError("the corpus has no training documents: cannot train a tokenizer")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=1 << 20)
    with atomic_dir(out_dir) as tmp:
        wrapped.save_pretrained(tmp)
    return count


def save_pretrained_tokenizer(name: str, out_dir: str | Path) -> None:
    """Copy a pretrained tokenizer (hub id or local dir) into `out_dir`; never runs remote code."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    if tokenizer.bos_token_id is None:
        raise TokenizationError(f"tokenizer {name!r} has no BOS token; the paper's packing needs one")
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)


def _load_backend(tokenizer_dir: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise TokenizationError(f"tokenizer in {tokenizer_dir} is not a fast tokenizer")
    return tok


def _batches(docs: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_corpus(docs: Iterable[str], tokenizer_dir: str | Path, out_dir: str | Path, *,
                    val_fraction: float, source_hash: str, threads: int = 1,
                    batch_size: int = 256, max_tokens: int = 0, progress: bool = True) -> dict:
    """Encode documents into `train.bin`/`val.bin` and write `manifest.json` last.

    Encoding runs in the Rust tokenizer over `threads` threads (RAYON_NUM_THREADS); shards are
    appended batch by batch so memory stays flat for a streamed corpus.
    """
    from tqdm.auto import tqdm

    os.environ["RAYON_NUM_THREADS"] = str(max(1, threads))
    tok = _load_backend(tokenizer_dir)
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    vocab_size = len(tok)
    bos = tok.bos_token_id
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = {split: out_dir / f"{split}.bin.partial" for split in ("train", "val")}
    counts = {"train": 0, "val": 0}
    documents = {"train": 0, "val": 0}
    handles = {split: open(path, "wb") for split, path in partial.items()}
    start = time.perf_counter()
    bar = tqdm(desc="tokenizing", unit="tok", unit_scale=True, disable=not progress, file=sys.stderr)
    try:
        for batch in _batches(docs, batch_size):
            encodings = backend.encode_batch(batch, add_special_tokens=False)
            for doc, enc in zip(batch, encodings):
                split = "val" if is_validation(doc, val_fraction) else "train"
                ids = np.asarray([bos, *enc.ids], dtype=dtype)
                handles[split].write(ids.tobytes())
                counts[split] += ids.size
                documents[split] += 1
                bar.update(ids.size)
            if max_tokens and counts["train"] >= max_tokens:
                break
    finally:
        bar.close()
        for handle in handles.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
    seconds = time.perf_counter() - start
    for split in ("train", "val"):
        if documents[split] == 0:
            raise TokenizationError(
                f"the {split} split is empty ({documents['train']} train / {documents['val']} val "
                f"documents): the corpus is too small or empty for data.val_fraction={val_fraction}")
    for split, path in partial.items():
        os.replace(path, out_dir / f"{split}.bin")
    tokens_per_s = (counts["train"] + counts["val"]) / max(seconds, 1e-9)
    manifest = {
        "format": "flat token ids, BOS before each document, no EOS",
        "files": {"train": "train.bin", "val": "val.bin"},
        "dtype": np.dtype(dtype).name,
        "vocab_size": vocab_size,
        "bos_id": bos,
        "eos_id": tok.eos_token_id,
        "tokens": counts,
        "documents": documents,
        "sha256": {split: sha256_file(out_dir / f"{split}.bin") for split in ("train", "val")},
        "source_hash": source_hash,
        "tokenizer_dir": str(tokenizer_dir),
        "val_fraction": val_fraction,
        "seconds": seconds,
        "tokens_per_s": tokens_per_s,
        "provenance": provenance(),
    }
    dump_json(manifest, out_dir / "manifest.json")
    print(f"tokenized {counts['train'] + counts['val']:,} tokens "
          f"({documents['train']:,} train / {documents['val']:,} val documents) "
          f"in {seconds:.1f} s: {tokens_per_s:,.0f} tokens/s", file=sys.stderr)
    return manifest


def corpus_source_hash(corpus_dir: str | Path) -> str:
    """Hash of the embedded corpus files (names and contents), recorded in the manifest."""
    digest = hashlib.sha256()
    files = sorted(Path(corpus_dir).glob("*.txt.xz"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def load_tokens(out_dir: str | Path, split: str) -> np.ndarray:
    """Memory-map one split using the manifest's dtype (read-only)."""
    from .io import load_json

    manifest = load_json(Path(out_dir) / "manifest.json")
    return np.memmap(Path(out_dir) / manifest["files"][split], dtype=manifest["dtype"], mode="r")


def configured_documents(data_cfg: dict) -> tuple[Iterator[str], str]:
    """The document stream selected by the config's `data` section, and its source hash."""
    from .data import corpus

    if data_cfg["source"] == "embedded":
        return corpus.iter_documents(data_cfg["corpus_dir"]), corpus_source_hash(data_cfg["corpus_dir"])
    if data_cfg["source"] == "fineweb_edu":
        fw = data_cfg["fineweb"]
        return (corpus.iter_fineweb_documents(fw["name"], fw["config"]),
                f"hub:{fw['name']}/{fw['config']}")
    if data_cfg["source"] == "synthetic":
        from .data import synthetic_tasks

        task, documents = synthetic_tasks.task_from_data_config(data_cfg)
        return task.documents(documents), synthetic_tasks.source_hash(task, documents)
    raise TokenizationError(f"unknown data.source {data_cfg['source']!r}")
