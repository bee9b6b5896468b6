"""Tiny local copies, in the hub's own formats, of every remote input `config/paper.yaml` names.

    python -m softpick_repro.offline_fixture [--out resources/offline]

writes what `config/paper_offline.yaml` points at, so `config/paper.yaml` + that overlay runs
the paper's data, tokenizer, metric-text and lm-eval code paths with no network:

- `fineweb-edu/sample/100BT/00{0,1,2,3}_00000.parquet`: FineWeb-Edu's columns (text, id, dump,
  url, file_path, language, language_score, token_count, score, int_score) and its file
  naming, four files so that `data.shards` jobs read disjoint files; the rows are documents
  of the embedded corpus (data/corpus).
- `tokenizer/`: a SentencePiece BPE trained on those documents, laid out as the paper's
  Llama-2 style tokenizer repo ships it (`softpick_repro.tokenizer_standin`).
- `slimpajama/validation/data-00000-of-00001.parquet`: SlimPajama's columns (text, meta).
- `lm_eval/<task>/<split>.parquet` for arc_easy (allenai/ai2_arc ARC-Easy: id, question,
  choices {text, label}, answerKey), lambada_openai (EleutherAI/lambada_openai: text), piqa
  (baber/piqa: goal, sol1, sol2, label), sciq (allenai/sciq: question, distractor1-3,
  correct_answer, support) and wikitext (EleutherAI/wikitext_document_level: page), with the
  splits lm-eval's task YAMLs read. Rows are made from the embedded evaluation sets
  (data/eval) so that they are real English; they are not the hub's rows.

Everything is written into a temporary sibling and renamed into place, so a half-written
fixture never looks complete; running it again replaces it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from .io import atomic_dir, dump_json, provenance

DEFAULT_OUT = "resources/offline"
FINEWEB_FILES = 4
LETTERS = "ABCDEFGH"


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def fineweb_rows(docs: list[str]) -> list[dict]:
    """FineWeb-Edu rows (its column names and types) around the given documents."""
    return [{"text": doc, "id": f"<urn:uuid:fixture-{i:06d}>", "dump": "CC-MAIN-2024-10",
             "url": f"https://example.org/doc/{i}", "file_path": f"fixture/{i // 100:04d}.warc.gz",
             "language": "en", "language_score": 0.95, "token_count": len(doc.split()),
             "score": 3.2, "int_score": 3} for i, doc in enumerate(docs)]


def _mc(records: list[dict], n: int) -> list[dict]:
    return [r for r in records if len(r["choices"]) >= 2][:n]


def lm_eval_tables(eval_dir: Path, per_split: int) -> dict[str, dict[str, list[dict]]]:
    """task -> split -> rows in the hub dataset's schema (see the module docstring)."""
    from .data.evalsets import load_eval_set

    social, wikihow = load_eval_set("social_iqa", eval_dir), load_eval_set("wikihow", eval_dir)
    timedial = load_eval_set("timedial", eval_dir)
    stories, wiki = load_eval_set("narrative_cloze", eval_dir), load_eval_set("wiki_ppl", eval_dir)

    def arc(rows):
        return [{"id": f"fixture/{r['id']}", "question": r["question"],
                 "choices": {"text": list(r["choices"]), "label": list(LETTERS[:len(r["choices"])])},
                 "answerKey": LETTERS[r["label"]]} for r in rows]

    def piqa(rows):
        out = []
        for r in rows:
            wrong = next(i for i in range(len(r["choices"])) if i != r["label"])
            pair = sorted([r["label"], wrong])
            out.append({"goal": r["question"], "sol1": r["choices"][pair[0]],
                        "sol2": r["choices"][pair[1]], "label": pair.index(r["label"])})
        return out

    def sciq(rows):
        out = []
        for r in rows:
            wrong = [c for i, c in enumerate(r["choices"]) if i != r["label"]]
            wrong = (wrong * 3)[:3]
            out.append({"question": r["question"], "distractor3": wrong[2], "distractor1": wrong[0],
                        "distractor2": wrong[1], "correct_answer": r["choices"][r["label"]],
                        "support": ""})
        return out

    def chunks(rows, k):
        return [rows[i * per_split:(i + 1) * per_split] for i in range(k)]

    a = chunks(_mc(social, 3 * per_split), 3)
    p = chunks(_mc(wikihow, 2 * per_split), 2)
    s = chunks(_mc(timedial, 3 * per_split), 3)
    w = chunks(wiki[:3 * per_split], 3)
    return {
        "arc_easy": {"train": arc(a[0]), "validation": arc(a[1]), "test": arc(a[2])},
        "lambada_openai": {"test": [{"text": r["text"]} for r in stories[:per_split]]},
        "piqa": {"train": piqa(p[0]), "validation": piqa(p[1])},
        "sciq": {"train": sciq(s[0]), "validation": sciq(s[1]), "test": sciq(s[2])},
        "wikitext": {split: [{"page": r["text"]} for r in rows]
                     for split, rows in zip(("train", "validation", "test"), w)},
    }


# bumped whenever the files or their places change (2: tokenizer.json added, SlimPajama split
# "validation"), so that a fixture written by older code is rewritten rather than read
LAYOUT = 2


def is_current(out_dir: str | Path = DEFAULT_OUT) -> bool:
    """Whether `out_dir` holds a complete fixture of this code's layout."""
    try:
        return json.loads((Path(out_dir) / "fixture.json").read_text()).get("layout") == LAYOUT
    except (OSError, ValueError):
        return False


def write_fixture(out_dir: str | Path = DEFAULT_OUT, *, corpus_dir: str | Path = "data/corpus",
                  eval_dir: str | Path = "data/eval", documents: int = 4000,
                  vocab_size: int = 2000, per_split: int = 40) -> Path:
    """Write the whole fixture into `out_dir` (replacing it); returns its path."""
    from .data.corpus import iter_documents
    from .tokenizer_standin import write_sentencepiece_dir

    out_dir = Path(out_dir)
    docs = list(itertools.islice(iter_documents(corpus_dir), documents))
    if len(docs) < 2 * FINEWEB_FILES:
        raise ValueError(f"{corpus_dir} gave {len(docs)} documents; the fixture needs at least "
                         f"{2 * FINEWEB_FILES}")
    with atomic_dir(out_dir) as tmp:
        rows = fineweb_rows(docs[: len(docs) * 3 // 4])
        per_file = -(-len(rows) // FINEWEB_FILES)
        for k in range(FINEWEB_FILES):
            _write_parquet(rows[k * per_file:(k + 1) * per_file],
                           tmp / "fineweb-edu" / "sample" / "100BT" / f"{k:03d}_00000.parquet")
        slim = [{"text": doc, "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}}
                for doc in docs[len(docs) * 3 // 4:]]
        _write_parquet(slim, tmp / "slimpajama" / "validation" / "data-00000-of-00001.parquet")
        for task, splits in lm_eval_tables(Path(eval_dir), per_split).items():
            for split, task_rows in splits.items():
                _write_parquet(task_rows, tmp / "lm_eval" / task / f"{split}.parquet")
        write_sentencepiece_dir(docs, tmp / "tokenizer", vocab_size)
        dump_json({"layout": LAYOUT, "documents": len(docs), "fineweb_files": FINEWEB_FILES, "vocab_size": vocab_size,
                   "rows_per_split": per_split, "provenance": provenance()}, tmp / "fixture.json")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the offline fixture of config/paper_offline.yaml")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--corpus-dir", default="data/corpus")
    parser.add_argument("--eval-dir", default="data/eval")
    args = parser.parse_args(argv)
    path = write_fixture(args.out, corpus_dir=args.corpus_dir, eval_dir=args.eval_dir)
    print(f"wrote the offline fixture to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
