"""Synthetic trigger-and-copy documents: data that never repeats, for the sink lab.

Why this task: Guo et al. 2024 ("Active-dormant attention heads", arXiv 2410.13835) find
attention sinks and residual-state peaks in small transformers trained on a bigram chain with
"back-copy" triggers: a head that has a job on some inputs (copy after a trigger) and none on
the others goes dormant on the others by attending to the first token. Several copy offsets
give several heads a job each.

A document is `length` symbols (the tokenize stage puts BOS before it). Symbols are either
ordinary (`a0` .. `a{S-1}`) or triggers (`t{offset}_{k}`: `triggers_per_offset` of them for
every copy offset). Position by position:
- the symbol after a trigger of offset o is a copy of the symbol o places before that trigger;
- otherwise, with probability `trigger_prob` a uniformly drawn trigger, else the next ordinary
  symbol of a bigram chain whose transition rows are Dirichlet(`dirichlet_alpha`) draws.
A trigger is never emitted before `max(offsets)` ordinary symbols exist nor while one of the
last `max(offsets) + 1` symbols is a trigger, so every copy source is an ordinary symbol.
A share `plain_fraction` of the documents has no triggers at all (the copy heads idle there).

Everything is a function of the seed: the bigram table comes from `default_rng([seed, 0])`,
documents are drawn in fixed blocks of `BLOCK` from `default_rng([seed, 1, block])`, so the
first n documents are the same whatever n is.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

BLOCK = 2048  # documents drawn per generator block (part of the definition of the stream)


class SyntheticTaskError(ValueError):
    """The generator parameters describe no valid task."""


@dataclass(frozen=True)
class TriggerCopyTask:
    """Parameters of the trigger-and-copy document stream (config `data.synthetic`)."""

    symbols: int = 64                       # ordinary symbols
    copy_offsets: tuple[int, ...] = (1, 2)  # a trigger of offset o copies the symbol o before it
    triggers_per_offset: int = 3            # distinct trigger symbols per offset
    trigger_prob: float = 0.1               # chance of a trigger at an allowed position
    dirichlet_alpha: float = 0.3            # concentration of the bigram rows (small = peaked)
    plain_fraction: float = 0.0             # share of documents without triggers
    length: int = 255                       # symbols per document (BOS comes on top)
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> "TriggerCopyTask":
        keys = {"symbols", "copy_offsets", "triggers_per_offset", "trigger_prob",
                "dirichlet_alpha", "plain_fraction", "length", "seed"}
        unknown = sorted(set(cfg) - keys - {"documents"})
        if unknown:
            raise SyntheticTaskError(f"unknown data.synthetic keys {unknown} (known: {sorted(keys)})")
        values = {k: cfg[k] for k in keys if k in cfg}
        if "copy_offsets" in values:
            values["copy_offsets"] = tuple(int(o) for o in values["copy_offsets"])
        task = cls(**values)
        task.check()
        return task

    def check(self) -> None:
        if self.symbols < 2:
            raise SyntheticTaskError(f"data.synthetic.symbols must be >= 2, got {self.symbols}")
        if not self.copy_offsets or min(self.copy_offsets) < 1:
            raise SyntheticTaskError(f"data.synthetic.copy_offsets must be a non-empty list of "
                                     f"integers >= 1, got {list(self.copy_offsets)}")
        if len(set(self.copy_offsets)) != len(self.copy_offsets):
            raise SyntheticTaskError(f"data.synthetic.copy_offsets repeats an offset: "
                                     f"{list(self.copy_offsets)}")
        if self.triggers_per_offset < 1:
            raise SyntheticTaskError(f"data.synthetic.triggers_per_offset must be >= 1, "
                                     f"got {self.triggers_per_offset}")
        if not 0.0 <= self.trigger_prob <= 1.0 or not 0.0 <= self.plain_fraction <= 1.0:
            raise SyntheticTaskError("data.synthetic.trigger_prob and plain_fraction must lie in "
                                     f"[0, 1], got {self.trigger_prob}, {self.plain_fraction}")
        if self.dirichlet_alpha <= 0:
            raise SyntheticTaskError(f"data.synthetic.dirichlet_alpha must be > 0, "
                                     f"got {self.dirichlet_alpha}")
        if self.length < max(self.copy_offsets) + 2:
            raise SyntheticTaskError(f"data.synthetic.length {self.length} leaves no room for a "
                                     f"trigger and its copy (offsets {list(self.copy_offsets)})")

    @property
    def vocabulary(self) -> list[str]:
        """Symbol names, ordinary first: index i in `generate_ids` output is `vocabulary[i]`."""
        ordinary = [f"a{i}" for i in range(self.symbols)]
        triggers = [f"t{o}_{k}" for o in self.copy_offsets for k in range(self.triggers_per_offset)]
        return ordinary + triggers

    def bigram_table(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0])
        return rng.dirichlet(np.full(self.symbols, self.dirichlet_alpha), size=self.symbols)

    def _block(self, block: int, cumulative: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, block])
        n, s = BLOCK, self.symbols
        offsets = np.asarray(self.copy_offsets)
        reach = int(offsets.max())
        out = np.empty((n, self.length), dtype=np.int64)
        with_triggers = rng.random(n) >= self.plain_fraction
        state = rng.integers(0, s, size=n)          # bigram state: the last ordinary symbol
        pending = np.full(n, -1)                     # offset of the trigger just emitted, or -1
        since_trigger = np.full(n, reach + 1)        # symbols since the last trigger
        rows = np.arange(n)
        for q in range(self.length):
            u_trig, u_pick, u_next = rng.random(n), rng.integers(0, 1 << 30, size=n), rng.random(n)
            nxt = (u_next[:, None] > cumulative[state]).sum(axis=1).clip(max=s - 1)
            symbol = nxt
            copying = pending >= 0
            if copying.any():
                src = q - 1 - pending[copying]
                symbol = np.where(copying, 0, symbol)
                symbol[copying] = out[rows[copying], src]
            trig = (~copying & with_triggers & (q >= reach) & (q < self.length - 1)
                    & (since_trigger > reach) & (u_trig < self.trigger_prob))
            k = u_pick % (len(offsets) * self.triggers_per_offset)
            symbol = np.where(trig, s + k, symbol)
            out[:, q] = symbol
            state = np.where(trig, state, symbol)
            pending = np.where(trig, offsets[k // self.triggers_per_offset], -1)
            since_trigger = np.where(trig, 0, since_trigger + 1)
        return out

    def generate_ids(self, documents: int) -> np.ndarray:
        """The first `documents` documents as symbol indices `[documents, length]`."""
        self.check()
        cumulative = np.cumsum(self.bigram_table(), axis=1)
        blocks = [self._block(b, cumulative) for b in range(-(-documents // BLOCK))]
        return np.concatenate(blocks)[:documents] if blocks else np.empty((0, self.length), np.int64)

    def documents(self, documents: int) -> Iterator[str]:
        """The documents as text, one space-separated symbol name per position."""
        names = np.asarray(self.vocabulary)
        cumulative = np.cumsum(self.bigram_table(), axis=1)
        for b in range(-(-documents // BLOCK)):
            ids = self._block(b, cumulative)[: documents - b * BLOCK]
            for row in names[ids]:
                yield " ".join(row)

    def describe(self) -> str:
        return (f"trigger-copy task: {self.symbols} symbols, offsets {list(self.copy_offsets)} x "
                f"{self.triggers_per_offset} triggers, p={self.trigger_prob}, "
                f"Dirichlet({self.dirichlet_alpha}), plain {self.plain_fraction}, "
                f"{self.length} symbols per document, seed {self.seed}")


def task_from_data_config(data_cfg: dict) -> tuple[TriggerCopyTask, int]:
    """The task and document count of the config's `data.synthetic` section."""
    syn = data_cfg.get("synthetic")
    if not syn:
        raise SyntheticTaskError("data.source=synthetic needs a data.synthetic section")
    documents = int(syn.get("documents", 0))
    if documents < 1:
        raise SyntheticTaskError(f"data.synthetic.documents must be >= 1, got {documents}")
    return TriggerCopyTask.from_config(syn), documents


def source_hash(task: TriggerCopyTask, documents: int) -> str:
    """Recorded in the token manifest: the documents are a function of these values."""
    return "synthetic:" + hashlib.sha256(f"{task.describe()}|{documents}".encode()).hexdigest()


def save_symbol_tokenizer(vocabulary: list[str], out_dir) -> None:
    """A word-level tokenizer with one id per symbol (3 + its index), after <unk>, <s>, </s>.

    Symbols are split on whitespace only, so no symbol is ever merged with or split from
    another (a BPE would merge frequent symbol pairs into one token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from softpick_repro.io import atomic_dir
    from softpick_repro.tokenize import SPECIAL_TOKENS

    if len(set(vocabulary)) != len(vocabulary) or set(vocabulary) & set(SPECIAL_TOKENS):
        raise SyntheticTaskError("symbol names must be unique and differ from the special tokens")
    vocab = {name: i for i, name in enumerate([*SPECIAL_TOKENS, *vocabulary])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                      unk_token="<unk>", model_max_length=1 << 20)
    with atomic_dir(out_dir) as tmp:
        wrapped.save_pretrained(tmp)
