"""Paper scale on a cluster (slurm profile, per-job resources) and released-model mode.

Released checkpoints are stood in for by tiny models written by flash-linear-attention's own
TransformerForCausalLM (fla 0.6.0), built on CPU in a subprocess as in tests/test_convert_fla.py:
its flash-attn call is stubbed (construction only, no forward), and the softpick checkpoint
gets the authors' fork key `attn_impl: parallel_softpick_attn` in its config.json.
"""
from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch

from softpick_repro import plan
from softpick_repro.config import REPO_ROOT, ConfigError, load_config
from softpick_repro.io import load_json

VOCAB = 1024  # = the BPE vocabulary of config/smoke.yaml, so the pipeline tokenizer fits

FLA_SCRIPT = textwrap.dedent(r'''
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import fla.layers.attn as fla_attn
    fla_attn.flash_attn_func = lambda *a, **k: None  # fla checks for flash-attn at construction
    from fla.models import TransformerConfig, TransformerForCausalLM
    out = Path(sys.argv[1])
    for name, impl in [("softmax", None), ("softpick", "parallel_softpick_attn")]:
        # the micro-s preset's shape: hidden 64, 2 layers, 2 heads, SwiGLU width 256
        cfg = TransformerConfig(hidden_size=64, num_hidden_layers=2, num_heads=2,
                                intermediate_size=256, vocab_size=int(sys.argv[2]),
                                max_position_embeddings=1024, initializer_range=0.05,
                                fuse_norm=False, fuse_swiglu=False, fuse_cross_entropy=False)
        torch.manual_seed(0 if impl is None else 1)
        model = TransformerForCausalLM(cfg)
        with torch.no_grad():  # non-unit norms, so a mis-mapped norm shows in the logits
            for pname, p in model.named_parameters():
                if pname.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
        model.save_pretrained(out / name)
        if impl is not None:
            path = out / name / "config.json"
            conf = json.loads(path.read_text())
            conf["attn_impl"] = impl
            path.write_text(json.dumps(conf))
''')


@pytest.fixture(scope="module")
def fla_checkpoints(tmp_path_factory):
    pytest.importorskip("fla")
    out = tmp_path_factory.mktemp("released")
    script = out / "make_fla.py"
    script.write_text(FLA_SCRIPT)
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(out), str(VOCAB)], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"building the fla checkpoints failed:\n{proc.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from softpick_repro.tokenize import train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    docs = [f"Document {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(300)]
    train_bpe_tokenizer(docs, 400, 2, out)
    return out


# ---- import_released -------------------------------------------------------------------
def test_import_writes_an_export_like_directory(fla_checkpoints, tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    import softpick_repro.model  # noqa: F401  registers the architecture
    from softpick_repro.model import load_fla_checkpoint
    from softpick_repro.released import import_released

    src = fla_checkpoints / "softpick"
    out = import_released(src, tokenizer_dir, tmp_path / "final", arm="softpick",
                          preset="micro-s", step=30, extra={"size": "micro-s"})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "provenance.json",
            "tokenizer.json"} <= names
    record = load_json(out / "provenance.json")
    assert record["step"] == 30 and record["released"] is True and record["arm"] == "softpick"
    assert record["origin"] == {"kind": "local", "path": str(src.resolve())}
    assert record["tokenizer"] == "pipeline" and record["size"] == "micro-s"
    assert record["fla_config"]["attn_impl"] == "parallel_softpick_attn"
    assert list(record["source_weights_sha256"]) == ["model.safetensors"]
    imported = AutoModelForCausalLM.from_pretrained(str(out), use_safetensors=True).eval()
    assert imported.config.attn_arm == "softpick"
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = load_fla_checkpoint(src)(ids).logits
        got = imported(ids).logits
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_import_prefers_the_checkpoints_own_tokenizer(fla_checkpoints, tokenizer_dir, tmp_path):
    from softpick_repro.released import import_released

    src = tmp_path / "with_tokenizer"
    shutil.copytree(fla_checkpoints / "softmax", src)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, src / name)
    out = import_released(src, tokenizer_dir, tmp_path / "final", arm="softmax", preset="micro-s", step=7)
    assert load_json(out / "provenance.json")["tokenizer"] == "checkpoint"
    assert (out / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


def test_import_refuses_a_different_tokenizer(fla_checkpoints, tokenizer_dir, tmp_path):
    from softpick_repro.released import import_released
    from softpick_repro.tokenize import train_bpe_tokenizer

    other = tmp_path / "other_tok"
    train_bpe_tokenizer([f"entirely different words number {i}" for i in range(200)], 300, 2, other)
    src = tmp_path / "with_tokenizer"
    shutil.copytree(fla_checkpoints / "softmax", src)
    shutil.copyfile(other / "tokenizer.json", src / "tokenizer.json")
    shutil.copyfile(other / "tokenizer_config.json", src / "tokenizer_config.json")
    with pytest.raises(ValueError, match="tokenizer differs from the pipeline's"):
        import_released(src, tokenizer_dir, tmp_path / "final", arm="softmax", preset="micro-s", step=1)
    assert not (tmp_path / "final").exists()


def test_import_checks_arm_shape_and_vocabulary(fla_checkpoints, tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    from softpick_repro.released import import_released

    with pytest.raises(ValueError, match="its attention is 'softpick'.*lists it as arm 'softmax'"):
        import_released(fla_checkpoints / "softpick", tokenizer_dir, tmp_path / "a", arm="softmax",
                        preset="micro-s", step=1)
    with pytest.raises(ValueError, match="preset 'micro-m': num_hidden_layers 2 \\(preset 3\\)"):
        import_released(fla_checkpoints / "softmax", tokenizer_dir, tmp_path / "b", arm="softmax",
                        preset="micro-m", step=1)
    big = tmp_path / "big_tok"
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tok.add_tokens([f"<extra_{i}>" for i in range(VOCAB)])
    tok.save_pretrained(big)
    with pytest.raises(ValueError, match=f"ids but the model's vocabulary only {VOCAB}"):
        import_released(fla_checkpoints / "softmax", big, tmp_path / "c", arm="softmax",
                        preset="micro-s", step=1)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_fetch_checkpoint_names_bad_sources(tmp_path):
    from softpick_repro.released import fetch_checkpoint

    with pytest.raises(FileNotFoundError, match="no such directory"):
        fetch_checkpoint(tmp_path / "missing" / "dir")
    with pytest.raises(FileNotFoundError, match="owner/name"):
        fetch_checkpoint("not a repo id")
    (tmp_path / "file.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        fetch_checkpoint(tmp_path / "file.safetensors")


# ---- config checks ---------------------------------------------------------------------
def _paper_with(models):
    cfg = load_config([REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml"])
    cfg["released_models"] = {"enabled": True, "models": models}
    return cfg


@pytest.mark.parametrize("models, message", [
    ({}, "no model is listed"),
    ({"7b": {"softmax": "a/b"}}, "released_models.models.7b.softmax: size '7b' is not in sizes"),
    ({"340m": {"gpt_oss_sink": "a/b"}}, "is a variant arm"),
    ({"1.8b": {"rectified": "a/b"}}, "arm 'rectified' is not planned at size '1.8b'"),
])
def test_released_config_errors_name_the_key(models, message):
    with pytest.raises(ConfigError, match=message):
        plan.check_released(_paper_with(models))


def test_released_overlay_validates_and_plans_no_training():
    cfg = load_config([REPO_ROOT / "config" / n for n in ("config.yaml", "paper.yaml", "released.yaml")])
    plan.check_released(cfg)
    assert plan.training_runs(cfg) == [] and plan.exports(cfg) == []
    assert set(plan.released_models(cfg)) == {("340m", "softmax"), ("340m", "softpick")}


# ---- Snakemake: slurm dry-run of the paper config, released-mode run -------------------
def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "envs", "data"):
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(cwd: Path, *args: str, timeout: int = 300, offline: bool = True) -> subprocess.CompletedProcess:
    """offline=False: plan as a user with hub access would (the plan check then asks nothing of
    the hub; with HF_HUB_OFFLINE=1 it wants every hub input staged in the cache)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if not offline:
        env.pop("HF_HUB_OFFLINE")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def dry_run_jobs(stdout: str) -> list[dict]:
    """Job blocks of a dry-run: rule name, wildcards and resources as a dict."""
    jobs = []
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            jobs.append({"rule": words[1][:-1], "resources": None, "wildcards": ""})
        elif jobs and line.startswith("    resources: "):
            pairs = line.split(": ", 1)[1].split(", ")
            jobs[-1]["resources"] = dict(p.split("=", 1) for p in pairs)
        elif jobs and line.startswith("    wildcards: "):
            jobs[-1]["wildcards"] = line.split(": ", 1)[1]
    return jobs


GPU_RULES = {"evaluate", "attention_metrics", "attention_maps", "dead_heads", "masked_eval", "passkey"}


@pytest.mark.slow
def test_paper_config_dry_runs_with_the_slurm_profile(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    result = snakemake(wf, "-n", "--nolock", "--profile", "profiles/slurm",
                       "--configfile", "config/paper.yaml", offline=False)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout)
    assert jobs and all(j["resources"] is not None for j in jobs), "a job without resources"
    pretrain = [j for j in jobs if j["rule"] == "pretrain"]
    assert len(pretrain) == 10
    for job in pretrain:  # one node, 8 GPUs (train.processes), the GPU partition
        res = job["resources"]
        assert (res["gpu"], res["nodes"], res["slurm_partition"]) == ("8", "1", "<GPU_PARTITION>"), job
        assert int(res["cpus_per_task"]) >= 8 and int(res["runtime"]) >= 24 * 60
    for job in jobs:
        res = job["resources"]
        assert res["slurm_account"] == "<ACCOUNT>"
        if job["rule"] in GPU_RULES:
            assert res.get("gpu") == "1" and res["slurm_partition"] == "<GPU_PARTITION>", job
        elif job["rule"] != "pretrain":
            assert res.get("gpu", "0") == "0" and res["slurm_partition"] == "<CPU_PARTITION>", job
    # the cost preview prices exactly the jobs Snakemake plans
    from softpick_repro.cost import plan_jobs

    cfg = load_config([REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml"])
    planned = Counter(j["rule"] for j in jobs)
    priced = Counter(j.rule for j in plan_jobs(cfg))
    assert {rule: planned[rule] for rule in priced} == dict(priced)


def _small_corpus(wf: Path, chars: int = 150_000) -> None:
    """Replace the copy's corpus by the first documents of one file (fast BPE and shards)."""
    corpus = wf / "data" / "corpus"
    text = lzma.open(corpus / "fortunes.txt.xz", "rt", encoding="utf-8").read()
    shutil.rmtree(corpus)
    corpus.mkdir()
    kept, size = [], 0
    for doc in (d for d in text.split("\n\n") if d.strip()):
        kept.append(doc)
        size += len(doc)
        if size >= chars:
            break
    with lzma.open(corpus / "small.txt.xz", "wt", encoding="utf-8") as handle:
        handle.write("\n\n".join(kept) + "\n")


@pytest.mark.slow
def test_released_mode_plans_and_runs_the_analysis(fla_checkpoints, tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    _small_corpus(wf)
    overlay = wf / "released_test.yaml"
    overlay.write_text(json.dumps({  # JSON is YAML
        "run_label": "released-model test",
        "data": {"val_fraction": 0.2},
        "sizes": [{"name": "micro-s", "preset": "micro-s", "label": "micro-S", "paper_size": "340M",
                   "steps": 30, "lr": 3e-3, "warmup_steps": 3, "keep_every": 10}],
        "runs": {"main_arms": ["softmax", "softpick"], "appendix_arms": [], "variant_arms": [],
                 "seeds": [79]},  # a released model has one seed (smoke.yaml has two)
        "metrics": {"num_samples": 4, "box_samples": 1, "length_sweep": [32], "sweep_samples": 2},
        "released_models": {"enabled": True, "models": {"micro-s": {
            "softmax": str(fla_checkpoints / "softmax"), "softpick": str(fla_checkpoints / "softpick")}}},
    }))
    configs = ["--configfile", "config/smoke.yaml", str(overlay)]

    plan_run = snakemake(wf, "--cores", "1", "-n", *configs)
    assert plan_run.returncode == 0, plan_run.stderr[-3000:]
    planned = Counter(j["rule"] for j in dry_run_jobs(plan_run.stdout))
    assert planned["import_released"] == 2
    for absent in ("pretrain", "export_hf", "table03_attention_variants", "figure06_dead_heads",
                   "figure02_training_curves", "figure07_training_curves_variants",
                   "table06_training_config"):
        assert planned[absent] == 0, absent
    # evaluation, quantization and the other analyses apply unchanged to the imported models
    assert planned["evaluate"] == 2 * 5  # none + hqq2, hqq4, bnb4, gptq4 (smoke grid)
    assert (planned["dead_heads"], planned["masked_eval"], planned["passkey"]) == (1, 1, 2)
    assert planned["table02_attention_metrics"] == 1 and planned["benchmark_tables"] == 1

    targets = ["results/tables/table02_attention_metrics.csv",
               "results/micro-s/softpick/seed_79/deadheads/final.json"]
    run = snakemake(wf, "--cores", "1", *targets, *configs, timeout=600)  # --configfile takes all that follows
    assert run.returncode == 0, run.stderr[-5000:]
    for arm in ("softmax", "softpick"):
        final = wf / "results" / "micro-s" / arm / "seed_79" / "train" / "final"
        record = load_json(final / "provenance.json")
        assert record["released"] and record["step"] == 30 and record["arm"] == arm
        assert record["source"] == str(fla_checkpoints / arm) and record["tokenizer"] == "pipeline"
        metrics = load_json(wf / "results" / "micro-s" / arm / "seed_79" / "metrics" / "attention_final.json")
        assert metrics["arm"] == arm and metrics["model_dir"].endswith(f"{arm}/seed_79/train/final")
    table = (wf / "results" / "tables" / "table02_attention_metrics.csv").read_text()
    assert "softmax" in table and "softpick" in table
    assert load_json(wf / "results" / "micro-s" / "softpick" / "seed_79" / "deadheads" / "final.json")["step"] == 30
    assert not (wf / "results" / "micro-s" / "softmax" / "seed_79" / "train" / "weights").exists()
