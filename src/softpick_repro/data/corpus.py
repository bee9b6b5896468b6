"""Training documents: the embedded offline corpus and the remote FineWeb-Edu stream.

Embedded corpus convention: `<corpus_dir>/*.txt.xz`, UTF-8, one document per block; blocks
are separated by exactly one blank line and a document never contains a blank line itself,
so splitting on blank lines is unambiguous. Files are read in sorted name order so that the
document order (and with it every derived token shard) is deterministic.
"""
from __future__ import annotations

import lzma
from pathlib import Path
from typing import Iterator

CORPUS_GLOB = "*.txt.xz"


def corpus_files(corpus_dir: str | Path) -> list[Path]:
    """The corpus files in sorted order; FileNotFoundError naming the directory if none."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {corpus_dir}")
    files = sorted(corpus_dir.glob(CORPUS_GLOB))
    if not files:
        raise FileNotFoundError(f"corpus directory {corpus_dir} holds no {CORPUS_GLOB} files")
    return files


def iter_file_documents(path: str | Path) -> Iterator[str]:
    """Documents of one `.txt.xz` file, streamed line by line (files can be tens of MB)."""
    lines: list[str] = []
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.strip():
                lines.append(line)
            elif lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)


def iter_documents(corpus_dir: str | Path) -> Iterator[str]:
    """All embedded documents, file by file in sorted order.

    Raises FileNotFoundError (naming the directory) when it is missing or holds no corpus
    file, and ValueError (naming the file) when a file holds no document at all.
    """
    for path in corpus_files(corpus_dir):
        count = 0
        for doc in iter_file_documents(path):
            count += 1
            yield doc
        if count == 0:
            raise ValueError(f"corpus file {path} holds no documents (empty after decompression)")


def iter_embedded_shard(corpus_dir: str | Path, shard: int = 0, shards: int = 1) -> Iterator[str]:
    """Shard `shard` of `shards` of the embedded corpus: every `shards`-th document."""
    for i, doc in enumerate(iter_documents(corpus_dir)):
        if i % shards == shard:
            yield doc


def open_stream(name: str, config: str | None = None, *, data_files=None, split: str = "train",
                text_column: str = "text", key: str = "data.fineweb"):
    """A streamed `datasets` split: a hub dataset by name, or local files of a builder
    (`name` parquet / json with `data_files`), one call either way. Checks first, with
    one-line errors naming `key`: that a hub name is reachable (or cached when offline) and
    that the text column exists (`remote_checks`)."""
    from datasets import load_dataset

    from softpick_repro.remote_checks import check_data_files, check_hub_source, check_text_column

    if data_files:
        check_data_files(data_files, key=f"{key}.data_files")
    else:
        check_hub_source(name, repo_type="dataset", key=f"{key}.name")

    stream = load_dataset(name, config, data_files=data_files or None, split=split, streaming=True)
    check_text_column(stream, text_column, where=f"{name}" + (f"/{config}" if config else ""),
                      key=f"{key}.text_column")
    return stream


def iter_fineweb_documents(name: str = "HuggingFaceFW/fineweb-edu", config: str | None = "sample-100BT",
                           split: str = "train", text_column: str = "text", *, data_files=None,
                           shard: int = 0, shards: int = 1) -> Iterator[str]:
    """Stream documents of a FineWeb-Edu-like dataset (the paper's sample-100BT by default).

    Hub name or local parquet/jsonl files with FineWeb-Edu's columns go through the same
    `datasets.load_dataset(..., streaming=True)`. Shard `shard` of `shards` is a contiguous
    block of the dataset's files (`IterableDataset.shard`), so `shards` jobs read disjoint
    files; there must be at least as many files as shards. Rows without text are skipped.
    """
    stream = open_stream(name, config, data_files=data_files, split=split, text_column=text_column)
    if shards > 1:
        if shards > stream.num_shards:
            raise ValueError(f"data.shards={shards} exceeds the {stream.num_shards} file(s) of "
                             f"{name}: each shard job reads whole files")
        stream = stream.shard(num_shards=shards, index=shard, contiguous=True)
    for row in stream:
        text = row.get(text_column)
        if isinstance(text, str) and text.strip():
            yield text
