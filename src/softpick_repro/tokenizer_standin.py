"""A SentencePiece tokenizer laid out like the paper's hub tokenizer, and its throughput.

The paper's tokenizer (`fla-hub/transformer-1.3B-100B`, the Llama-2 32k SentencePiece model:
<unk> 0, <s> 1, </s> 2, byte fallback) cannot be fetched offline. `write_sentencepiece_dir`
trains a stand-in with the same model type and special ids on local text and writes the
directory with the files the fla-hub tokenizer repos ship: `tokenizer.model`, `tokenizer.json`,
`tokenizer_config.json` and `special_tokens_map.json`. The hub's file listings of
transformer-2.7B-100B and transformer-340M-10B list all four; for transformer-1.3B-100B a stored
page of its `tokenizer.json` (1.8 MB) was seen, not its whole listing. `tokenizer.json` is made
here by transformers' SentencePiece -> fast conversion (needs `sentencepiece` and `protobuf`),
the way such files are usually made; a directory with `tokenizer.model` alone still loads
through that conversion (remote_checks.py checks its dependencies). Two uses: the offline
fixture (a few hundred tokens) and the tokens/s per core measurement behind the cost preview's
tokenization estimate (32k tokens):

    python -m softpick_repro.tokenizer_standin train --out DIR [--vocab-size 32000]
    python -m softpick_repro.tokenizer_standin bench --tokenizer DIR --out perf/tokenize_cpu.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from .io import atomic_dir, bench_environment, dump_json

# tokenizer_config.json of a Llama-2 style repo (the keys transformers reads).
TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": None,
    "add_bos_token": True,
    "add_eos_token": False,
    "legacy": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 1000000000000000019884624838656,
}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def write_sentencepiece_dir(docs: Iterable[str], out_dir: str | Path, vocab_size: int, *,
                            max_sentences: int = 2_000_000, threads: int = 1) -> Path:
    """Train a Llama-style SentencePiece BPE on `docs`; write a hub-layout tokenizer dir."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as work, atomic_dir(out_dir) as tmp:
        text = Path(work) / "train.txt"
        with open(text, "w", encoding="utf-8") as handle:
            for doc in docs:
                for line in doc.splitlines():
                    if line.strip():
                        handle.write(line.strip() + "\n")
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(Path(work) / "tokenizer"), vocab_size=vocab_size,
            model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=0.99995,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, num_threads=threads, minloglevel=2,
            hard_vocab_limit=False)
        (tmp / "tokenizer.model").write_bytes((Path(work) / "tokenizer.model").read_bytes())
        (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2) + "\n")
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(tmp)).backend_tokenizer.save(str(tmp / "tokenizer.json"))
    return out_dir


def measure_tokens_per_s(tokenizer_dir: str | Path, docs: Iterable[str], *, threads: int = 1,
                         batch_size: int = 256, max_docs: int = 20_000) -> dict:
    """Encode up to `max_docs` documents the way the tokenize stage does (the fast tokenizer's
    Rust backend, `encode_batch`, RAYON_NUM_THREADS=threads); tokens/s overall and per core."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=False)
    backend = tok.backend_tokenizer
    batch = list(itertools.islice(docs, max_docs))
    if not batch:
        raise ValueError("no documents to measure on")
    start = time.perf_counter()
    tokens = 0
    chars = 0
    for i in range(0, len(batch), batch_size):
        chunk = batch[i:i + batch_size]
        tokens += sum(len(e.ids) for e in backend.encode_batch(chunk, add_special_tokens=False))
        chars += sum(len(d) for d in chunk)
    seconds = time.perf_counter() - start
    return {"tokenizer_class": type(tok).__name__, "vocab_size": len(tok), "threads": threads,
            "documents": len(batch), "tokens": tokens, "characters": chars, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "tokens_per_s_per_core": tokens / seconds / threads,
            "chars_per_token": chars / tokens, **bench_environment()}


def _embedded_docs(corpus_dir: str):
    from .data.corpus import iter_documents

    return iter_documents(corpus_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a stand-in on the embedded corpus")
    train.add_argument("--out", required=True)
    train.add_argument("--vocab-size", type=int, default=32000)
    train.add_argument("--corpus-dir", default="data/corpus")
    train.add_argument("--threads", type=int, default=1)
    bench = sub.add_parser("bench", help="tokens/s of a tokenizer dir on the embedded corpus")
    bench.add_argument("--tokenizer", required=True)
    bench.add_argument("--corpus-dir", default="data/corpus")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--max-docs", type=int, default=20_000)
    bench.add_argument("--out", help="write the measurement as JSON")
    bench.add_argument("--stage", action="store_true",
                       help="time the tokenize stage's own code (tokenize_corpus, whole corpus) instead of encode_batch")
    args = parser.parse_args(argv)
    if args.command == "train":
        write_sentencepiece_dir(_embedded_docs(args.corpus_dir), args.out, args.vocab_size,
                                threads=args.threads)
        print(f"wrote {args.out}")
        return 0
    if args.stage:
        from .tokenize import corpus_source_hash, tokenize_corpus

        with tempfile.TemporaryDirectory() as tmp:
            manifest = tokenize_corpus(_embedded_docs(args.corpus_dir), args.tokenizer, tmp,
                                       val_fraction=0.02, source_hash=corpus_source_hash(args.corpus_dir),
                                       threads=args.threads, progress=False)
        record = {"measured": "tokenize_corpus (the tokenize_shard code path)", "threads": args.threads,
                  "tokens": manifest["tokens"], "seconds": manifest["seconds"],
                  "tokens_per_s_per_core": manifest["tokens_per_s_per_thread"], **bench_environment()}
    else:
        record = measure_tokens_per_s(args.tokenizer, _embedded_docs(args.corpus_dir),
                                      threads=args.threads, max_docs=args.max_docs)
    print(json.dumps(record, indent=2))
    if args.out:
        dump_json(record, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
