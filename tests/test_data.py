"""Embedded corpus and evaluation sets: loaders, validation errors, and the shipped files."""
import hashlib
import json
import lzma
import re
import sys
import types
from pathlib import Path

import pytest

from softpick_repro.data import corpus
from softpick_repro.data.evalsets import (EVAL_SETS, chance_level, load_eval_file, load_eval_set,
                                          split_cloze)

DATA = Path(__file__).resolve().parents[1] / "data"


def write_xz(path: Path, text: str) -> Path:
    path.write_bytes(lzma.compress(text.encode("utf-8")))
    return path


# ---- corpus loader on small files -------------------------------------------------------------

def test_documents_split_on_blank_lines_in_sorted_file_order(tmp_path):
    write_xz(tmp_path / "b.txt.xz", "third doc\n\n\n\nfourth doc line 1\nline 2\n")
    write_xz(tmp_path / "a.txt.xz", "first doc\nstill first\n\nsecond doc")
    (tmp_path / "notes.txt").write_text("not a corpus file")
    assert list(corpus.iter_documents(tmp_path)) == [
        "first doc\nstill first", "second doc", "third doc", "fourth doc line 1\nline 2"]


def test_missing_or_empty_corpus_dir_names_the_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        list(corpus.iter_documents(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"holds no \*\.txt\.xz"):
        list(corpus.iter_documents(tmp_path))


def test_empty_corpus_file_is_an_error(tmp_path):
    write_xz(tmp_path / "a.txt.xz", "one doc\n")
    write_xz(tmp_path / "z.txt.xz", "\n\n")
    with pytest.raises(ValueError, match="z.txt.xz holds no documents"):
        list(corpus.iter_documents(tmp_path))


def test_fineweb_stream_uses_datasets_streaming(monkeypatch):
    calls = []

    class Stream:
        features = {"text": None, "id": None}

        def __iter__(self):
            return iter([{"text": "a doc"}, {"text": ""}, {"text": "another"}])

    def load_dataset(name, config, data_files=None, split=None, streaming=False):
        calls.append((name, config, data_files, split, streaming))
        return Stream()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    checked = []  # the hub check runs first (offline here: recorded, not sent)
    monkeypatch.setattr("softpick_repro.remote_checks.check_hub_source",
                        lambda name, repo_type, key: checked.append((name, repo_type, key)))
    docs = list(corpus.iter_fineweb_documents())
    assert checked == [("HuggingFaceFW/fineweb-edu", "dataset", "data.fineweb.name")]
    assert docs == ["a doc", "another"]
    assert calls == [("HuggingFaceFW/fineweb-edu", "sample-100BT", None, "train", True)]


# ---- the shipped corpus ----------------------------------------------------------------------

def test_shipped_corpus_is_large_real_and_well_formed():
    files = corpus.corpus_files(DATA / "corpus")
    assert len(files) >= 5
    compressed = sum(f.stat().st_size for f in files)
    raw = docs = 0
    for path in files:
        per_file = 0
        for doc in corpus.iter_file_documents(path):
            assert doc.strip() and "\n\n" not in doc
            raw += len(doc.encode("utf-8")) + 2
            per_file += 1
        assert per_file > 100, path
        docs += per_file
    assert raw >= 10_000_000 and compressed <= 20_000_000
    assert docs > 10_000


def _readme_rows():
    rows = re.findall(r"^\| `((?:corpus|eval)/[^`]+)` \|.*\| `([0-9a-f]{64})` \|$",
                      (DATA / "README.md").read_text(), flags=re.M)
    return dict(rows)


def test_readme_checksums_match_shipped_files():
    rows = _readme_rows()
    shipped = sorted(str(p.relative_to(DATA)) for p in DATA.glob("*/*.xz"))
    assert sorted(rows) == shipped
    for rel, digest in rows.items():
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


# ---- the shipped evaluation sets -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EVAL_SETS))
def test_shipped_eval_set_matches_registry(name):
    spec = EVAL_SETS[name]
    records = load_eval_set(name, DATA / "eval")
    assert len(records) == spec.items
    assert 500 <= len(records) <= 2000
    if spec.kind == "multiple_choice":
        assert spec.chance == pytest.approx(chance_level(records), abs=5e-5)
        assert all(2 <= len(r["choices"]) <= 5 for r in records)
        labels = [r["label"] for r in records]
        # answers must not sit at one position (the choice order was shuffled when building)
        assert max(labels.count(i) for i in set(labels)) < 0.5 * len(labels)
    else:
        assert spec.chance is None
    if spec.kind == "cloze":
        for r in records:
            context, target = split_cloze(r["text"])
            assert target.isalpha() and len(context.split()) >= 15
    if spec.kind != "multiple_choice":
        assert max(len(r["text"].split()) for r in records) <= 300


def test_registry_covers_every_shipped_file():
    assert sorted(s.file for s in EVAL_SETS.values()) == sorted(p.name for p in (DATA / "eval").glob("*.jsonl.xz"))
    assert {s.kind for s in EVAL_SETS.values()} == {"multiple_choice", "cloze", "perplexity"}


# ---- validation errors -----------------------------------------------------------------------

GOOD_MC = {"id": "q1", "question": "Pick one:", "choices": ["a", "b", "c"], "label": 2}


@pytest.mark.parametrize("record, message", [
    ({k: v for k, v in GOOD_MC.items() if k != "label"}, r"missing field\(s\) \['label'\]"),
    ({**GOOD_MC, "extra": 1}, r"unexpected field\(s\) \['extra'\]"),
    ({**GOOD_MC, "label": 3}, "out of range for 3 choices"),
    ({**GOOD_MC, "label": True}, "must be an integer index"),
    ({**GOOD_MC, "label": "0"}, "must be an integer index"),
    ({**GOOD_MC, "choices": ["only"]}, "at least 2 strings"),
    ({**GOOD_MC, "choices": ["a", "a"]}, "duplicates"),
    ({**GOOD_MC, "choices": ["a", ""]}, "non-empty string"),
    ({**GOOD_MC, "question": ""}, "'question' must be a non-empty string"),
    ({**GOOD_MC, "id": 7}, "'id' must be a non-empty string"),
    (["not", "an", "object"], "expected a JSON object, got list"),
])
def test_bad_multiple_choice_record_names_file_and_line(tmp_path, record, message):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(GOOD_MC) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ") + ".*" + message):
        load_eval_file(path, "multiple_choice")


def test_invalid_json_duplicate_ids_and_empty_files(tmp_path):
    bad = write_xz(tmp_path / "bad.jsonl.xz", json.dumps(GOOD_MC) + "\n{not json\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:2: invalid JSON")):
        load_eval_file(bad, "multiple_choice")
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps(GOOD_MC) + "\n\n" + json.dumps(GOOD_MC) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{dup}:3: duplicate id 'q1' (first on line 1)")):
        load_eval_file(dup, "multiple_choice")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="holds no evaluation records"):
        load_eval_file(empty, "perplexity")


def test_cloze_and_perplexity_records(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "c1", "text": "The cat sat on the mat"}) + "\n"
                    + json.dumps({"id": "c2", "text": "mat"}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: cloze 'text' needs a context")):
        load_eval_file(path, "cloze")
    assert load_eval_file(path, "perplexity")[1]["text"] == "mat"  # one word is a valid document
    path.write_text(json.dumps({"id": "p1", "text": " "}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: 'text' must be a non-empty string")):
        load_eval_file(path, "perplexity")
    assert split_cloze("The cat sat on the  mat ") == ("The cat sat on the", "mat")


def test_unknown_set_kind_and_missing_file(tmp_path):
    with pytest.raises(KeyError, match="unknown evaluation set 'nope'"):
        load_eval_set("nope", tmp_path)
    with pytest.raises(ValueError, match="unknown evaluation kind"):
        load_eval_file(tmp_path / "x.jsonl", "essay")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "wikihow.jsonl.xz"))):
        load_eval_set("wikihow", tmp_path)


def test_chance_level_is_mean_inverse_choice_count():
    records = [{"choices": ["a", "b"]}, {"choices": ["a", "b", "c", "d"]}]
    assert chance_level(records) == pytest.approx((0.5 + 0.25) / 2)
