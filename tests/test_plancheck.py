"""The plan check rejects, when the workflow loads, every setting a job would reject later
(issue 21, item 1): one test per rejection, a few through `snakemake -n`."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from softpick_repro.config import ConfigError, deep_merge, load_config, validate_config
from softpick_repro.plancheck import CHECKS, check_plan, check_working_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = REPO_ROOT / "config" / "config.yaml"
SMOKE = REPO_ROOT / "config" / "smoke.yaml"


def smoke_with(overlay: dict) -> dict:
    config = deep_merge(load_config([DEFAULT, SMOKE]), overlay)
    validate_config(config)  # the overlay itself is schema-valid: the plan check must catch it
    return config


def micro_size(**changes):
    """The smoke config's sizes with the first entry changed."""
    sizes = load_config([DEFAULT, SMOKE])["sizes"]
    sizes[0] = {**sizes[0], **changes}
    return sizes


@pytest.mark.parametrize("files", [
    [DEFAULT], [DEFAULT, SMOKE], [DEFAULT, REPO_ROOT / "config" / "paper.yaml"],
    [DEFAULT, REPO_ROOT / "config" / "paper.yaml", REPO_ROOT / "config" / "released.yaml"],
])
def test_shipped_configs_pass(files, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # online: hub ids are the jobs' to reach
    check_plan(load_config(files))


def test_missing_local_corpus_files_fail_the_plan(tmp_path):
    overlay = {"data": {"source": "fineweb_edu",
                        "fineweb": {"name": "parquet", "config": None,
                                    "data_files": {"train": str(tmp_path / "nowhere" / "*.parquet")}}}}
    with pytest.raises(ConfigError, match=r"remote input error: data\.fineweb\.data_files: no file matches "
                                          r"'.*nowhere/\*\.parquet'"):
        check_plan(smoke_with(overlay))
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "part-0.parquet").write_bytes(b"")
    check_plan(smoke_with(overlay))  # present: the loader reads it


def test_offline_plan_needs_every_hub_input_in_the_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 with nothing staged: the dry run fails naming each hub input, not the
    first job that opens one (hours later, for the corpus after the tokenizer)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as err:
        check_plan(load_config([DEFAULT, REPO_ROOT / "config" / "paper.yaml"]))
    message = str(err.value)
    assert "\n" not in message
    assert "tokenizer.pretrained_name='fla-hub/transformer-1.3B-100B': HF_HUB_OFFLINE=1" in message
    assert "data.fineweb='HuggingFaceFW/fineweb-edu'" in message
    assert "stage_in" in message


def test_a_cuda_plan_passes_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without a GPU")
    check_plan(smoke_with({"device": "cuda"}))


def test_checks_are_a_list_of_small_functions():
    assert all(callable(check) and check.__doc__ for check in CHECKS)
    assert len(CHECKS) >= 5


CASES = {
    # issue 21 item 1: "an unknown size preset fails 46 s into its pretrain job"
    "unknown preset": ({"sizes": micro_size(preset="micro-xl")},
                       r"config error at sizes\.0\.preset \(micro-s\): unknown model preset 'micro-xl'"),
    # "a global batch not divisible by the micro-batch"
    "indivisible batch": ({"train": {"global_batch": 12, "micro_batch": 8}},
                          r"config error at train\.global_batch: micro-s/softmax: global batch 12 does not divide"),
    "indivisible over processes": ({"train": {"global_batch": 8, "micro_batch": 8, "processes": 3}},
                                   r"config error at train\.global_batch: .*8 x 3 process"),
    # "warmup >= steps"
    "warmup >= steps": ({"sizes": micro_size(warmup_steps=30)},
                        r"config error at sizes\.0\.warmup_steps \(micro-s\): .*warmup_steps must be in \[0, steps=30\)"),
    # "a NaN learning rate aborts" (after max_consecutive_skips steps): now before any job
    "nan lr": ({"sizes": micro_size(lr=float("nan"))},
               r"config error at sizes\.0\.lr \(micro-s\): .*lr must be a finite number > 0, got nan"),
    # "a quantization group size that does not divide a layer width"
    "group size vs width": ({"quantization": {"group_size": 96}},
                            r"config error at quantization\.group_size: hqq2 of micro-[sm]/softmax: group_size 96 "
                            r"does not divide the input width"),
    "bnb block size": ({"quantization": {"group_size": 32}},
                       r"config error at quantization\.group_size: bnb4 of .*block size \(group_size\) must be one of"),
    # "train.seq_len 4096 on a model with 1024 positions trains to the end with exit 0"
    "train seq_len": ({"train": {"seq_len": 4096}},
                      r"config error at train\.seq_len: train\.seq_len=4096 exceeds the model's context of 1024"),
    # "a GPTQ calibration length of 4096 on a 64-token model evaluates with exit 0"
    "calibration vs context": ({"quantization": {"calibration": {"length": 4096}}},
                               r"config error at quantization\.calibration\.length: .*=4096 exceeds the model's context"),
    "calibration vs trained context": ({"quantization": {"calibration": {"length": 128}}},
                                       r"config error at quantization\.calibration\.length: 128 tokens is longer "
                                       r"than the trained context train\.seq_len=64"),
    # "metrics seq_len 5000, eval max_length 100000 and a passkey length of 20x the context"
    "metrics seq_len": ({"metrics": {"seq_len": 5000}},
                        r"config error at metrics\.seq_len: metrics\.seq_len=5000 exceeds"),
    "metrics length sweep": ({"metrics": {"length_sweep": [32, 2048]}},
                             r"config error at metrics\.length_sweep: metrics\.length_sweep=2048 exceeds"),
    "eval max_length": ({"eval": {"max_length": 100000}},
                        r"config error at eval\.max_length: eval\.max_length=100000 exceeds"),
    "passkey 20x": ({"passkey": {"fractions": [0.75, 20 * 1024 / 64]}},
                    r"config error at passkey\.fractions: passkey\.fractions=20480 exceeds"),
    "dead heads seq_len": ({"dead_heads": {"seq_len": 2048}},
                           r"config error at dead_heads\.seq_len: dead_heads\.seq_len=2048 exceeds"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_check_rejects(name):
    overlay, message = CASES[name]
    config = smoke_with(overlay)
    with pytest.raises(ConfigError, match=message) as info:
        check_plan(config)
    assert "\n" not in str(info.value)


def test_the_trainer_rejects_a_sequence_beyond_the_context_too(tmp_path):
    # The plan check calls the job's own check; a run started by hand gets it as well.
    from softpick_repro.train import train
    from softpick_repro.train.synthetic import micro_train_config, write_synthetic_shards

    tokens = write_synthetic_shards(tmp_path / "tokens", train_tokens=40_000)
    with pytest.raises(ValueError, match=r"train\.seq_len=2048 exceeds the model's context of 1024"):
        train(micro_train_config(seq_len=2048, global_batch=2, micro_batch=2, steps=4),
              tokens_dir=tokens, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_released_mode_errors_still_come_from_the_plan_check():
    config = smoke_with({"runs": {"seeds": [79]},  # released models have one seed
                         "released_models": {"enabled": True, "models": {"micro-s": {"relu_softmax": "x/y"}}}})
    with pytest.raises(ConfigError, match=r"released_models\.models\.micro-s\.relu_softmax: .*variant arm"):
        check_plan(config)


def test_working_directory_must_be_the_repository_root(tmp_path):
    check_working_directory(REPO_ROOT, REPO_ROOT)
    with pytest.raises(ConfigError, match=rf"snakemake runs in {tmp_path}.*cd {REPO_ROOT}"):
        check_working_directory(REPO_ROOT, tmp_path)


# ---- through Snakemake (each a few seconds to ~20 s on 2 busy cores) ----------------------
def snakemake(*args, cwd=REPO_ROOT):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--nolock", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    result.output = result.stdout + result.stderr  # Snakemake 9 logs errors to stdout
    return result


@pytest.mark.parametrize("overlay, key", [
    ("train:\n  seq_len: 4096\n", "config error at train.seq_len"),
    ("quantization:\n  group_size: 96\n", "config error at quantization.group_size"),
])
def test_dry_run_fails_naming_the_key(tmp_path, overlay, key):
    path = tmp_path / "overlay.yaml"
    path.write_text(overlay)
    result = snakemake("-n", "--configfile", str(SMOKE), str(path))
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if line.startswith("config error")]
    assert len(lines) == 1 and lines[0].startswith(key), result.output[-2000:]


def test_dry_run_from_another_directory_names_the_cause(tmp_path):
    result = snakemake("-n", "-s", str(REPO_ROOT / "Snakefile"), "--configfile", str(SMOKE), cwd=tmp_path)
    assert result.returncode != 0
    assert f"snakemake runs in {tmp_path.resolve()}" in result.output
    assert "required property" not in result.output


def test_broken_default_config_names_the_file_and_line(tmp_path):
    for item in ("Snakefile", "workflow", "src"):
        src = REPO_ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("device: auto\ntrain:\n  lr: [1, 2\n  seq: : 3\n")
    result = snakemake("-n", cwd=tmp_path)
    assert result.returncode != 0
    assert "config file config/config.yaml is not valid YAML at line 4" in result.output, result.output[-2000:]


def test_dry_run_names_a_missing_local_corpus(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text("data:\n  source: fineweb_edu\n  fineweb: {name: parquet, config: null, "
                    f"data_files: {{train: '{tmp_path}/staged/*.parquet'}}}}\n")
    result = snakemake("-n", "--configfile", str(SMOKE), str(path))
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if line.startswith("remote input error")]
    assert lines == [f"remote input error: data.fineweb.data_files: no file matches '{tmp_path}/staged/*.parquet'"], \
        result.output[-2000:]


def test_a_task_name_lm_eval_does_not_ship_fails_the_plan(monkeypatch):
    """The shipped names are read from lm-eval's task files in a fraction of a second; only a
    name not among them is put to lm-eval's TaskManager (~20 s), stubbed here with the same
    message shape."""
    from softpick_repro import remote_checks

    asked = []

    def task_manager_check(names, known=None):
        asked.append(list(names))
        raise remote_checks.RemoteInputError(f"eval.tasks.lm_eval: lm-eval knows no task {', '.join(map(repr, names))}")

    monkeypatch.setattr(remote_checks, "check_lm_eval_tasks", task_manager_check)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    config = load_config([DEFAULT, REPO_ROOT / "config" / "paper.yaml"])
    check_plan(config)  # the paper's five tasks are all shipped: the TaskManager is not asked
    assert asked == []
    config["eval"]["tasks"]["lm_eval"] = [*config["eval"]["tasks"]["lm_eval"], "arc_eazy"]
    with pytest.raises(ConfigError, match=r"remote input error: eval\.tasks\.lm_eval: lm-eval knows no task 'arc_eazy'$"):
        check_plan(config)
    assert asked == [["arc_eazy"]]
