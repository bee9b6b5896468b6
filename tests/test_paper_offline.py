"""The paper config's remote inputs read from local copies in their real formats, sharded
tokenization, one-line errors for bad remote inputs, the stage-in check, and (slow) the
paper config + offline overlay end to end through Snakemake."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from softpick_repro.config import REPO_ROOT, load_config
from softpick_repro.data.token_shards import TokenStream, open_split
from softpick_repro.offline_fixture import is_current, write_fixture
from softpick_repro.remote_checks import (RemoteInputError, check_lm_eval_tasks, check_hub_source,
                                          check_text_column, check_tokenizer_dir)
from softpick_repro.tokenize import configured_documents, gather_manifest, shard_name, tokenize_shard

CONFIG = REPO_ROOT / "config"


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("fixture") / "offline", documents=400,
                         vocab_size=600, per_split=12,
                         corpus_dir=REPO_ROOT / "data" / "corpus", eval_dir=REPO_ROOT / "data" / "eval")


def _data_cfg(fixture_dir, shards):
    return {"source": "fineweb_edu", "corpus_dir": "data/corpus", "val_fraction": 0.1, "shards": shards,
            "fineweb": {"name": "parquet", "config": None, "max_tokens": 0, "split": "train",
                        "text_column": "text",
                        "data_files": {"train": str(fixture_dir / "fineweb-edu/sample/100BT/*.parquet")}}}


# ---- the one reader --------------------------------------------------------------------------
def test_token_stream_reads_parts_as_one_array():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 500, n).astype(np.uint16) for n in (7, 1, 0, 13, 5)]
    whole = np.concatenate(parts)
    stream = TokenStream(parts, np.uint16)
    assert len(stream) == whole.size
    for _ in range(200):
        a, b = sorted(rng.integers(0, whole.size + 1, 2))
        assert np.array_equal(stream[a:b], whole[a:b])
    assert stream[-1] == whole[-1] and stream[3] == whole[3]
    assert np.array_equal(np.asarray(stream), whole) and np.array_equal(stream == 3, whole == 3)
    with pytest.raises(IndexError):
        stream[::2]


# ---- corpus: local FineWeb-Edu files, sharded -----------------------------------------------
def test_sharded_tokenization_covers_the_corpus_once(fixture_dir, tmp_path):
    tokenizer = fixture_dir / "tokenizer"
    out = tmp_path / "tokens"
    parts, per_shard_docs = [], []
    for shard in range(2):
        docs, source = configured_documents(_data_cfg(fixture_dir, 2), shard, 2)
        docs = list(docs)
        per_shard_docs.append(docs)
        tokenize_shard(docs, tokenizer, out / shard_name(shard), val_fraction=0.1, source_hash=source,
                       shard=shard, shards=2, progress=False)
        parts.append(out / shard_name(shard) / "part.json")
    all_docs, _ = configured_documents(_data_cfg(fixture_dir, 1), 0, 1)
    all_docs = list(all_docs)
    assert per_shard_docs[0] and per_shard_docs[1]
    assert per_shard_docs[0] + per_shard_docs[1] == all_docs  # contiguous file blocks, in order
    before = (out / shard_name(0) / "train.bin").stat().st_mtime_ns
    # a killed shard job leaves no part.json; rerunning it rewrites that shard only
    (out / shard_name(1) / "part.json").unlink()
    tokenize_shard(per_shard_docs[1], tokenizer, out / shard_name(1), val_fraction=0.1,
                   source_hash=source, shard=1, shards=2, progress=False)
    assert (out / shard_name(0) / "train.bin").stat().st_mtime_ns == before
    manifest = gather_manifest(parts, out)
    assert [s["dir"] for s in manifest["shards"]] == [shard_name(0), shard_name(1)]
    train = open_split(out, "train")
    first = np.fromfile(out / shard_name(0) / "train.bin", dtype=np.uint16)
    assert len(train) == manifest["tokens"]["train"] and np.array_equal(train[:first.size], first)
    assert int((open_split(out, "val") == 1).sum()) == manifest["documents"]["val"]


def test_more_shards_than_files_is_one_line(fixture_dir):
    docs, _ = configured_documents(_data_cfg(fixture_dir, 5), 0, 5)
    with pytest.raises(ValueError, match=r"data.shards=5 exceeds the 4 file\(s\)"):
        next(iter(docs))


def test_gather_refuses_an_incomplete_set(fixture_dir, tmp_path):
    docs, source = configured_documents(_data_cfg(fixture_dir, 2), 0, 2)
    tokenize_shard(docs, fixture_dir / "tokenizer", tmp_path / shard_name(0), val_fraction=0.1,
                   source_hash=source, shard=0, shards=2, progress=False)
    with pytest.raises(Exception, match="do not cover 0..1"):
        gather_manifest([tmp_path / shard_name(0) / "part.json"], tmp_path)
    assert not (tmp_path / "manifest.json").exists()


# ---- tokenizer laid out as the hub ships it -------------------------------------------------
def test_fixture_tokenizer_is_a_hub_layout_llama_tokenizer(fixture_dir):
    from transformers import AutoTokenizer

    files = sorted(p.name for p in (fixture_dir / "tokenizer").iterdir())
    # the four files of the fla-hub tokenizer repos (tokenizer_standin.py says where that was read)
    assert files == ["special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"]
    tok = AutoTokenizer.from_pretrained(str(fixture_dir / "tokenizer"))
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok("The cat sat.")["input_ids"][0] == 1 and tok.is_fast
    # tokenizer.json and the SentencePiece model alone (the conversion path) give the same ids
    slow_only = fixture_dir.parent / "slow_only_tokenizer"
    slow_only.mkdir(exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (slow_only / name).write_bytes((fixture_dir / "tokenizer" / name).read_bytes())
    text = "The cat sat on 12,345 mats; naïve café."
    assert AutoTokenizer.from_pretrained(str(slow_only))(text)["input_ids"] == tok(text)["input_ids"]


# ---- one-line errors -------------------------------------------------------------------------
def test_missing_text_column_is_named(tmp_path):
    from softpick_repro.data.corpus import iter_fineweb_documents

    pq.write_table(pa.Table.from_pylist([{"content": "x", "id": "1"}]), tmp_path / "a.parquet")
    with pytest.raises(RemoteInputError, match=r"has no column 'text' \(columns: content, id\): set data.fineweb.text_column"):
        next(iter_fineweb_documents("parquet", None, data_files=str(tmp_path / "a.parquet")))


def test_tokenizer_dir_missing_files_is_named(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(RemoteInputError, match="holds neither tokenizer.json nor tokenizer.model"):
        check_tokenizer_dir(tmp_path)


def test_unknown_lm_eval_task_is_named():
    with pytest.raises(RemoteInputError, match="knows no task 'arc_eazy'"):
        check_lm_eval_tasks(["arc_easy", "arc_eazy"], known=["arc_easy", "piqa"])


def test_uncached_hub_name_offline_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RemoteInputError, match=r"tokenizer.pretrained_name='fla-hub/transformer-1.3B-100B': "
                                               "HF_HUB_OFFLINE=1 and the model is not in the Hugging Face cache"):
        check_hub_source("fla-hub/transformer-1.3B-100B", repo_type="model", key="tokenizer.pretrained_name")


def test_text_column_check_peeks_when_features_are_unknown():
    class Stream:
        features = None

        def take(self, n):
            return [{"body": "x"}]

    with pytest.raises(RemoteInputError, match="has no column 'text'"):
        check_text_column(Stream(), "text", where="json")


# ---- metric text and lm-eval from local copies ----------------------------------------------
def test_slimpajama_windows_from_local_parquet(fixture_dir):
    from transformers import AutoTokenizer

    from softpick_repro.analysis.metric_text import slimpajama_windows

    tok = AutoTokenizer.from_pretrained(str(fixture_dir / "tokenizer"))
    windows, info = slimpajama_windows(tok, 32, 5, name="parquet", config=None, split="validation",
                                       data_files={"validation": str(fixture_dir / "slimpajama/validation/*.parquet")})
    assert windows.shape == (5, 32) and (windows[:, 0] == 1).all() and info["full_documents"] == 5


def test_lm_eval_reads_its_own_tasks_from_local_copies(fixture_dir, monkeypatch):
    from softpick_repro.evaluate.lm_eval_runner import task_manager, task_requests

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = fixture_dir / "lm_eval"
    overrides = {t: {"dataset_path": "parquet", "dataset_name": None,
                     "dataset_kwargs": {"data_files": {s: str(lm / t / f"{s}.parquet") for s in splits}}}
                 for t, splits in {"arc_easy": ("train", "validation", "test"), "piqa": ("train", "validation"),
                                   "wikitext": ("train", "validation", "test")}.items()}
    loaded = task_manager(list(overrides), None).load(task_requests(list(overrides), overrides))
    tasks = loaded["tasks"]
    assert set(tasks) == {"arc_easy", "piqa", "wikitext"}
    assert tasks["arc_easy"].config.doc_to_text == "Question: {{question}}\nAnswer:"  # lm-eval's own YAML
    assert len(list(tasks["arc_easy"].test_docs())) == 12
    assert len(list(tasks["piqa"].validation_docs())) == 12
    assert [m["metric"] for m in tasks["wikitext"].config.metric_list] == [
        "word_perplexity", "byte_perplexity", "bits_per_byte"]


# ---- stage-in: the offline half ---------------------------------------------------------------
def test_stage_in_check_passes_on_the_offline_overlay_and_names_what_is_missing(monkeypatch, tmp_path, capsys):
    from softpick_repro import stage_in

    if not is_current(REPO_ROOT / "resources" / "offline"):
        write_fixture(REPO_ROOT / "resources" / "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(REPO_ROOT)
    assert stage_in.main(["--configfile", str(CONFIG / "paper.yaml"), str(CONFIG / "paper_offline.yaml"),
                          "--check"]) == 0
    assert stage_in.main(["--configfile", str(CONFIG / "paper.yaml"), "--check"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("tokenizer.pretrained_name='fla-hub/transformer-1.3B-100B'") for line in err)
    assert any(line.startswith("data.fineweb='HuggingFaceFW/fineweb-edu'") for line in err)
    assert any(line.startswith("eval.lm_eval_datasets.arc_easy") for line in err)


def test_paper_cost_prices_sharded_tokenization_and_disk():
    from softpick_repro import cost

    cfg = load_config([CONFIG / "config.yaml", CONFIG / "paper.yaml"])
    jobs = cost.plan_jobs(cfg)
    shards = [j for j in jobs if j.rule == "tokenize_shard"]
    assert len(shards) == cfg["data"]["shards"] == 32
    tokens = cfg["data"]["fineweb"]["max_tokens"] / (1 - cfg["data"]["val_fraction"])
    rate = cfg["cost"]["tokenize_tokens_per_s_per_core"]
    assert sum(j.cpu_hours for j in shards) == pytest.approx(tokens / rate / 3600)
    assert max(j.wall_hours for j in shards) == pytest.approx(tokens / 32 / rate / 3600 / 16)
    assert sum(j.disk_gb for j in shards) == pytest.approx(tokens * 2 / 1e9)
    assert cost.cpu_totals(jobs)["disk_by_rule"]["export_hf"] > 0


def test_figure_stems_with_a_dotted_size_name(tmp_path):
    """The paper's size 1.8b puts a dot in figure stems (found by the offline run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from softpick_repro.report.savefig import save_figure

    stem = tmp_path / "figure17_attention_maps_1.8b_softpick_text2"
    written = save_figure(plt.figure(), stem)
    assert sorted(p.name for p in written) == [stem.name + ".pdf", stem.name + ".png"]
    assert all(p.exists() for p in written)


# ---- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_paper_config_runs_offline_end_to_end(tmp_path):
    """config/paper.yaml + config/paper_offline.yaml through Snakemake in a copy of the repo:
    every rule of the plan executes, with no network."""
    work = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(work)], check=True)
    # the working tree's files (the test runs before they are committed, too); no rsync: a fresh
    # Debian machine lacks it. Virtual environments stay out: the test runs sys.executable.
    shutil.copytree(REPO_ROOT, work, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", "results", "logs", "benchmarks", "checkpoints",
                                                  ".snakemake", "resources", ".venv", "venv"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(work / "src")}
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True,
                                       text=True, timeout=3600)
    assert run("-m", "softpick_repro.offline_fixture").returncode == 0
    overlay = ["--configfile", "config/paper.yaml", "config/paper_offline.yaml"]
    plan = run("-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2", *overlay)
    planned = {line.split()[0] for line in plan.stdout.splitlines()
               if len(line.split()) == 2 and line.split()[1].isdigit() and line.split()[0] != "total"}
    assert {"tokenize_shard", "tokenize", "pretrain", "evaluate", "attention_metrics", "dead_heads",
            "passkey", "html_report"} <= planned
    result = run("-m", "snakemake", "--cores", "2", *overlay)
    assert result.returncode == 0, result.stderr[-5000:]
    executed = {line.split("Rule: ")[1].rstrip(")") for line in result.stderr.splitlines()
                if "Finished jobid" in line and "Rule: " in line}
    assert planned <= executed | {"all"}, planned - executed
    assert (work / "results" / "report.html").exists()
