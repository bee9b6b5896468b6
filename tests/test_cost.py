"""The cost preview: FLOPs of the planned jobs and the GPU-hours they imply."""
import copy

import pytest

from softpick_repro import cost, plan
from softpick_repro.config import REPO_ROOT, ConfigError, load_config, validate_config
from softpick_repro.model.presets import build_config, count_parameters

CONFIG = REPO_ROOT / "config"
PAPER_340M_GPU_HOURS = 8 * 18  # SOFTPICK.md section 3: 8 x H100, ~18 h


@pytest.fixture(scope="module")
def paper():
    return load_config([CONFIG / "config.yaml", CONFIG / "paper.yaml"])


@pytest.fixture(scope="module")
def paper_jobs(paper):
    return cost.plan_jobs(paper)


def test_340m_softmax_training_within_2x_of_the_paper(paper_jobs):
    job = cost.find_job(paper_jobs, "pretrain", "340m", "softmax")
    assert job.gpus == 8
    assert PAPER_340M_GPU_HOURS / 2 <= job.gpu_hours <= PAPER_340M_GPU_HOURS * 2, job.gpu_hours


def test_training_flops_follow_the_stated_formula(paper_jobs):
    cfg = build_config("340m", "softmax", 32000)
    n = count_parameters(cfg, embeddings=False)
    assert 330e6 < n < 350e6  # ~340M: decoder + lm_head, no input embedding table
    tokens = 100_000 * 128 * 4096
    want = 6 * n * tokens + 6 * 24 * 4096 * 1024 * tokens  # 6N + 12LTd/2 per token
    job = cost.find_job(paper_jobs, "pretrain", "340m", "softmax")
    assert job.tokens == tokens
    assert job.flops == pytest.approx(want, rel=1e-12)
    # 1.8B at 2x the tokens: ~5x the per-token FLOPs of 340M
    big = cost.find_job(paper_jobs, "pretrain", "1.8b", "softmax")
    assert 8 < big.flops / job.flops < 11


def test_gpu_hours_scale_with_mfu_and_overhead(paper):
    cfg = copy.deepcopy(paper)
    cfg["cost"]["job_overhead_min"] = 0
    base = cost.find_job(cost.plan_jobs(cfg), "pretrain", "340m", "softpick")
    assert base.gpu_hours == pytest.approx(base.flops / (989e12 * 0.3) / 3600)
    cfg["cost"]["mfu"]["train"] = 0.6
    faster = cost.find_job(cost.plan_jobs(cfg), "pretrain", "340m", "softpick")
    assert faster.gpu_hours == pytest.approx(base.gpu_hours / 2)
    cfg["cost"]["job_overhead_min"] = 60
    slow = cost.find_job(cost.plan_jobs(cfg), "pretrain", "340m", "softpick")
    assert slow.gpu_hours == pytest.approx(faster.gpu_hours + 8)  # one hour on each of 8 GPUs


def test_variant_runs_stop_at_ten_percent(paper_jobs):
    full = cost.find_job(paper_jobs, "pretrain", "340m", "softmax")
    short = cost.find_job(paper_jobs, "pretrain", "340m", "relu_softmax")
    assert short.tokens == full.tokens / 10


def test_every_planned_rule_is_listed(paper_jobs):
    counts = {}
    for job in paper_jobs:
        counts[job.rule] = counts.get(job.rule, 0) + 1
    # 2 sizes x 2 main arms + 2 appendix + 4 variant arms at 340M
    assert counts["pretrain"] == 10
    # 46 = (2 sizes x 2 main arms x (1 + 10 quantized)) + 2 appendix arms unquantized
    assert counts["evaluate"] == 46
    assert counts["dead_heads"] == 10 + 20  # softpick: 9 + 19 kept steps, and final
    assert all(j.gpu_hours > 0 for j in paper_jobs if j.gpus)
    assert all(j.gpu_hours == 0 for j in paper_jobs if not j.gpus)


def test_eval_tokens_follow_the_limit():
    default = load_config([CONFIG / "config.yaml"])
    small = copy.deepcopy(default)
    small["eval"]["limit"] = 10
    full = sum(t for _, t, _ in cost.eval_passes(default))
    few = sum(t for _, t, _ in cost.eval_passes(small))
    assert 0 < few < full / 5  # limit 100 -> 10 documents per task


def test_released_mode_replaces_training_with_imports(paper):
    cfg = copy.deepcopy(paper)
    cfg["released_models"] = {"enabled": True, "models": {"340m": {"softmax": "a/b", "softpick": "c/d"}}}
    plan.check_released(cfg)
    jobs = cost.plan_jobs(cfg)
    trained = {(j.size, j.arm) for j in jobs if j.rule == "pretrain"}
    assert ("340m", "softmax") not in trained and ("340m", "softpick") not in trained
    assert len(trained) == 8
    assert {(j.size, j.arm) for j in jobs if j.rule == "import_released"} == {("340m", "softmax"), ("340m", "softpick")}
    # the released softpick has only its final model: one dead-head job at 340M, not ten
    assert [j.detail for j in jobs if j.rule == "dead_heads" and j.size == "340m"] == ["final"]
    assert "softpick" not in plan.table3_arms(cfg) and "rectified" in plan.table3_arms(cfg)


def test_cli_merges_like_snakemake_and_prints_totals(tmp_path, capsys):
    out = tmp_path / "cost.json"
    # the default config is prepended when only an overlay is given
    assert cost.main(["--configfile", str(CONFIG / "paper.yaml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Total GPU-hours: train" in text and "pretrain" in text and "1.8b" in text
    from softpick_repro.io import load_json

    record = load_json(out)
    assert record["totals_gpu_hours"]["all"] == pytest.approx(
        sum(j["gpu_hours"] for j in record["jobs"]))


def test_bad_cost_keys_are_rejected():
    cfg = load_config([CONFIG / "config.yaml"])
    cfg["cost"]["mfu"]["train"] = 1.5
    with pytest.raises(ConfigError, match="cost.mfu.train"):
        validate_config(cfg)
    cfg = load_config([CONFIG / "config.yaml"])
    cfg["cost"]["gpu_peak"] = 989
    with pytest.raises(ConfigError, match="unknown config key cost.gpu_peak"):
        validate_config(cfg)


def test_a_second_seed_doubles_every_job_on_a_run(paper, paper_jobs):
    cfg = copy.deepcopy(paper)
    cfg["runs"]["seeds"] = [79, 80]
    jobs = cost.plan_jobs(cfg)
    for rule in ("pretrain", "evaluate", "dead_heads", "passkey", "export_hf", "attention_metrics"):
        one = sum(j.rule == rule for j in paper_jobs)
        assert sum(j.rule == rule for j in jobs) == 2 * one, rule
        assert {j.seed for j in jobs if j.rule == rule} == {79, 80}
    assert sum(j.rule == "tokenize" for j in jobs) == 1
    # GPU-hours double too, but for the attention maps, drawn from the first seed only
    hours = lambda js: sum(j.gpu_hours for j in js if j.rule != "attention_maps")  # noqa: E731
    assert hours(jobs) == pytest.approx(2 * hours(paper_jobs))
    assert sum(j.rule == "attention_maps" for j in jobs) == sum(j.rule == "attention_maps" for j in paper_jobs)


def test_released_models_need_a_single_seed(paper):
    cfg = copy.deepcopy(paper)
    cfg["runs"]["seeds"] = [79, 80]
    cfg["released_models"] = {"enabled": True, "models": {"340m": {"softmax": "some/repo"}}}
    with pytest.raises(ConfigError, match="runs.seeds: released models have one seed each"):
        plan.check_released(cfg)
