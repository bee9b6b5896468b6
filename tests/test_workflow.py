"""The workflow plans for every config, lints clean, and rejects bad configs before any job."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softpick_repro.config import REPO_ROOT


def snakemake(*args, cwd=REPO_ROOT):
    # --nolock: a dry run must not wait for (or disturb) a pipeline running in the same tree.
    # Without HF_HUB_OFFLINE (tests/conftest.py sets it): these plans are made as by a user with
    # hub access, for whom the plan check asks nothing of the hub; offline it would want the
    # paper config's hub inputs staged (tests/test_plancheck.py covers that).
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--nolock", *args]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def planned_rules(result):
    """Rule names of a `--dry-run --quiet rules` plan (the job-count table)."""
    rules = set()
    in_table = False
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            rules.add(parts[0])
    return rules


# config/gpu.yaml (device: cuda) plans here too: a plan made without a GPU (login node, CI) must pass
@pytest.mark.parametrize("overlay", [[], ["--configfile", "config/smoke.yaml"], ["--configfile", "config/paper.yaml"],
                                     ["--configfile", "config/gpu.yaml"], ["--configfile", "config/sinklab.yaml"],
                                     ["--configfile", "config/sinklab.yaml", "config/sinklab_massive.yaml"]])
def test_dry_run_plans(overlay):
    result = snakemake("-n", "--quiet", "rules", "--rerun-incomplete", *overlay)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = planned_rules(result)
    assert planned or "Nothing to be done" in result.stdout + result.stderr
    if planned and "pretrain" in planned:
        # whatever is left to do, a plan that trains also reports what it trains for
        assert {"html_report", "paper_comparison_and_claims"} <= planned


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_unknown_config_key_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokenizer:\n  vocabsize: 10\n")
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "unknown config key tokenizer.vocabsize" in result.stdout + result.stderr


def test_missing_corpus_is_named(tmp_path):
    overlay = tmp_path / "empty_corpus.yaml"
    overlay.write_text(f"data:\n  corpus_dir: {tmp_path}\n")
    result = snakemake("-n", "--forceall", "--configfile", str(overlay))
    assert result.returncode != 0
    assert "holds no *.txt.xz corpus files" in result.stdout + result.stderr


def test_two_seed_plan_matches_the_cost_preview():
    """config/smoke.yaml has two seeds: every job on a run is planned once per seed, and the
    cost preview (softpick_repro.plan / cost) counts the same jobs as Snakemake."""
    from collections import Counter

    from softpick_repro.config import load_config
    from softpick_repro.cost import plan_jobs

    result = snakemake("-n", "--quiet", "rules", "--forceall", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    cfg = load_config([REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "smoke.yaml"])
    assert len(cfg["runs"]["seeds"]) == 2
    priced = Counter(job.rule for job in plan_jobs(cfg))
    assert {rule: counts.get(rule, 0) for rule in priced} == dict(priced)
    assert counts["pretrain"] == 2 * 10 and counts["combine_seeds"] == 12  # 8 benchmark tables + Tables 2-5


def test_a_variant_arm_exports_its_table3_step_once():
    """A variant arm stops at the Table 3 step, so its final export is that step: no second
    export of the same weights, and Table 3 reads its final metrics; an arm that trains on
    exports the step next to its final."""
    from softpick_repro import plan
    from softpick_repro.config import load_config

    cfg = load_config([REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "smoke.yaml"])
    size = cfg["sizes"][0]["name"]
    step = plan.variant_step(cfg, size)
    variant, main = cfg["runs"]["variant_arms"][0], cfg["runs"]["main_arms"][0]
    assert plan.stop_step(cfg, size, variant) == step
    assert step not in plan.keep_steps(cfg, size, variant)
    assert plan.variant_ckpt(cfg, size, variant) == "final"
    assert step in plan.keep_steps(cfg, size, main) and plan.variant_ckpt(cfg, size, main) == f"step_{step}"
    runs = plan.attention_metric_runs(cfg)
    assert (size, variant, "final") in runs and len(runs) == len(set(runs))
