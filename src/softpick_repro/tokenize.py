"""Tokenizer stage (train a byte-level BPE, or load the paper's tokenizer) and the
tokenization stage (corpus -> `data.shards` token shards, gathered by a JSON manifest).

Shard format: per shard one flat array of token ids per split (`shards/<k>/train.bin`,
`val.bin`), dtype uint16 when every id fits, else uint32; each document is preceded by BOS
and no EOS is appended (the paper's packing, SOFTPICK.md protocol details); the trainer cuts
consecutive windows. Each shard job writes its `part.json` last and the gather job the
`manifest.json`, so a killed job never leaves a file that looks complete.
`softpick_repro.data.token_shards` is the one reader of the layout.
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

    from .remote_checks import check_hub_source, check_tokenizer_dir, is_local

    if is_local(name):
        check_tokenizer_dir(name)
    else:
        check_hub_source(name, repo_type="model", key="tokenizer.pretrained_name")
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


def shard_name(index: int) -> str:
    """Directory name of shard `index` under the token directory (`shards/00003`)."""
    return f"shards/{index:05d}"


def tokenize_shard(docs: Iterable[str], tokenizer_dir: str | Path, shard_dir: str | Path, *,
                   val_fraction: float, source_hash: str, shard: int = 0, shards: int = 1,
                   threads: int = 1, batch_size: int = 256, max_tokens: int = 0,
                   progress: bool = True) -> dict:
    """Encode one shard's documents into `train.bin`/`val.bin` and write `part.json` last.

    Encoding runs in the Rust tokenizer over `threads` threads (RAYON_NUM_THREADS); files are
    appended batch by batch so memory stays flat for a streamed corpus. `max_tokens` bounds
    this shard's train tokens (0 = no bound). A killed job leaves only `*.partial` files and
    no `part.json`, so rerunning it redoes this shard alone.
    """
    from tqdm.auto import tqdm

    os.environ["RAYON_NUM_THREADS"] = str(max(1, threads))
    tok = _load_backend(tokenizer_dir)
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    vocab_size = len(tok)
    bos = tok.bos_token_id
    if bos is None:
        raise TokenizationError(f"tokenizer in {tokenizer_dir} has no BOS token; the packing needs one")
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32

    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    partial = {split: shard_dir / f"{split}.bin.partial" for split in ("train", "val")}
    counts = {"train": 0, "val": 0}
    documents = {"train": 0, "val": 0}
    handles = {split: open(path, "wb") for split, path in partial.items()}
    start = time.perf_counter()
    bar = tqdm(desc=f"tokenizing shard {shard}", unit="tok", unit_scale=True,
               disable=not progress, file=sys.stderr)
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
    for split, path in partial.items():
        os.replace(path, shard_dir / f"{split}.bin")
    total = counts["train"] + counts["val"]
    part = {
        "shard": shard,
        "shards": shards,
        "dtype": np.dtype(dtype).name,
        "vocab_size": vocab_size,
        "bos_id": bos,
        "eos_id": tok.eos_token_id,
        "tokens": counts,
        "documents": documents,
        "sha256": {split: sha256_file(shard_dir / f"{split}.bin") for split in ("train", "val")},
        "source_hash": source_hash,
        "tokenizer_dir": str(tokenizer_dir),
        "val_fraction": val_fraction,
        "threads": threads,
        "seconds": seconds,
        "tokens_per_s": total / max(seconds, 1e-9),
        "provenance": provenance(),
    }
    dump_json(part, shard_dir / "part.json")
    print(f"shard {shard}/{shards}: {total:,} tokens ({documents['train']:,} train / "
          f"{documents['val']:,} val documents) in {seconds:.1f} s: "
          f"{part['tokens_per_s']:,.0f} tokens/s on {threads} thread(s)", file=sys.stderr)
    return part


_SAME_IN_EVERY_PART = ("dtype", "vocab_size", "bos_id", "eos_id", "source_hash", "val_fraction", "shards")


def gather_manifest(part_files: Iterable[str | Path], out_dir: str | Path) -> dict:
    """Check the shards' `part.json` files against each other and write `manifest.json`.

    Parts must come from one tokenizer, one corpus and one plan (same dtype, vocabulary, BOS,
    source, val fraction and shard count) and cover shards 0..n-1 exactly once. Each split
    must hold at least one document over all shards.
    """
    from .io import load_json

    out_dir = Path(out_dir).resolve()
    paths = [Path(p).resolve() for p in part_files]
    if not paths:
        raise TokenizationError("no token shards to gather")
    parts = [load_json(p) for p in paths]
    first = parts[0]
    for path, part in zip(paths, parts):
        for key in _SAME_IN_EVERY_PART:
            if part.get(key) != first.get(key):
                raise TokenizationError(f"{path}: {key}={part.get(key)!r} differs from shard "
                                        f"0's {first.get(key)!r}: shards of different runs")
    order = sorted(range(len(parts)), key=lambda i: parts[i]["shard"])
    if [parts[i]["shard"] for i in order] != list(range(first["shards"])):
        raise TokenizationError(f"shards {sorted(p['shard'] for p in parts)} do not cover "
                                f"0..{first['shards'] - 1} exactly once")
    totals = {s: sum(p["tokens"][s] for p in parts) for s in ("train", "val")}
    docs = {s: sum(p["documents"][s] for p in parts) for s in ("train", "val")}
    for split in ("train", "val"):
        if docs[split] == 0:
            raise TokenizationError(
                f"the {split} split is empty ({docs['train']} train / {docs['val']} val documents "
                f"over {len(parts)} shard(s)): the corpus is too small or empty for "
                f"data.val_fraction={first['val_fraction']}")
    seconds = sum(p["seconds"] for p in parts)
    thread_seconds = sum(p["seconds"] * p.get("threads", 1) for p in parts)
    manifest = {
        "format": "flat token ids, BOS before each document, no EOS; one directory per shard",
        **{key: first[key] for key in ("dtype", "vocab_size", "bos_id", "eos_id")},
        "tokens": totals,
        "documents": docs,
        "shards": [{"dir": os.path.relpath(paths[i].parent, out_dir), "tokens": parts[i]["tokens"],
                    "documents": parts[i]["documents"], "sha256": parts[i]["sha256"]}
                   for i in order],
        "source_hash": first["source_hash"],
        "tokenizer_dir": first["tokenizer_dir"],
        "val_fraction": first["val_fraction"],
        "seconds": seconds,
        "tokens_per_s_per_thread": (totals["train"] + totals["val"]) / max(thread_seconds, 1e-9),
        "provenance": provenance(),
    }
    dump_json(manifest, out_dir / "manifest.json")
    return manifest


def tokenize_corpus(docs: Iterable[str], tokenizer_dir: str | Path, out_dir: str | Path, *,
                    val_fraction: float, source_hash: str, threads: int = 1,
                    batch_size: int = 256, max_tokens: int = 0, progress: bool = True) -> dict:
    """The one-shard case in one call: `tokenize_shard` into `shards/00000`, then gather."""
    out_dir = Path(out_dir)
    tokenize_shard(docs, tokenizer_dir, out_dir / shard_name(0), val_fraction=val_fraction,
                   source_hash=source_hash, threads=threads, batch_size=batch_size,
                   max_tokens=max_tokens, progress=progress)
    return gather_manifest([out_dir / shard_name(0) / "part.json"], out_dir)


def corpus_source_hash(corpus_dir: str | Path) -> str:
    """Hash of the embedded corpus files (names and contents), recorded in the manifest."""
    digest = hashlib.sha256()
    files = sorted(Path(corpus_dir).glob("*.txt.xz"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def load_tokens(out_dir: str | Path, split: str):
    """One split of a token directory as one flat read-only array (all its shards)."""
    from .data.token_shards import open_split

    return open_split(out_dir, split)


def _embedded_documents(data_cfg: dict, shard: int, shards: int) -> tuple[Iterator[str], str]:
    from .data import corpus

    return (corpus.iter_embedded_shard(data_cfg["corpus_dir"], shard, shards),
            corpus_source_hash(data_cfg["corpus_dir"]))


def _fineweb_documents(data_cfg: dict, shard: int, shards: int) -> tuple[Iterator[str], str]:
    from .data import corpus

    fw = data_cfg["fineweb"]
    files = fw.get("data_files") or None
    docs = corpus.iter_fineweb_documents(fw["name"], fw["config"], fw.get("split", "train"),
                                         fw.get("text_column", "text"), data_files=files,
                                         shard=shard, shards=shards)
    source = f"hub:{fw['name']}/{fw['config']}" if not files else f"files:{fw['name']}:{files}"
    return docs, source


def _synthetic_documents(data_cfg: dict, shard: int, shards: int) -> tuple[Iterator[str], str]:
    """Every `shards`-th generated document from `shard` on (the generator is deterministic)."""
    import itertools

    from .data import synthetic_tasks

    task, documents = synthetic_tasks.task_from_data_config(data_cfg)
    return (itertools.islice(task.documents(documents), shard, None, shards),
            synthetic_tasks.source_hash(task, documents))


# data.source -> (data_cfg, shard, shards) -> (documents of that shard, source hash).
# A new source is one function and one entry here.
DOCUMENT_SOURCES = {
    "embedded": _embedded_documents,
    "fineweb_edu": _fineweb_documents,
    "synthetic": _synthetic_documents,
}


def configured_documents(data_cfg: dict, shard: int = 0, shards: int = 1) -> tuple[Iterator[str], str]:
    """Shard `shard` of `shards` of the document stream the config's `data` section selects,
    and its source hash (the same for every shard)."""
    source = data_cfg["source"]
    if source not in DOCUMENT_SOURCES:
        raise TokenizationError(f"unknown data.source {source!r}; known: {sorted(DOCUMENT_SOURCES)}")
    if not 0 <= shard < shards:
        raise TokenizationError(f"shard {shard} is outside 0..{shards - 1} (data.shards={shards})")
    return DOCUMENT_SOURCES[source](data_cfg, shard, shards)
