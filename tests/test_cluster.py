"""softpick_repro.cluster: the CI profile overlay, reading SLURM accounting back against the
profile and the plan, and the pre-run check of partitions/accounts (sbatch --test-only)."""
import shutil
import subprocess

import pytest
import yaml

from softpick_repro import cluster
from softpick_repro.config import REPO_ROOT

PROFILE = {"default-resources": {"slurm_account": "acct", "slurm_partition": "cpu", "cpus_per_task": 2,
                                 "mem_mb": 8000, "runtime": 60},
           "set-resources": {"pretrain": {"slurm_partition": "gpu", "cpus_per_task": 4, "mem_mb": 3000,
                                          "runtime": 90}}}


def job(jobid, rule, state="COMPLETED", partition="cpu", cpus="2", mem="8000M", limit="01:00:00", wc=""):
    comment = f"rule_{rule}" + (f"_wildcards_{wc}" if wc else "") if rule else ""
    return {"JobID": jobid, "State": state, "Partition": partition, "Account": "acct", "ReqCPUS": cpus,
            "ReqMem": mem, "Timelimit": limit, "ElapsedRaw": "5", "WorkDir": "/run", "Comment": comment,
            "rule": cluster.rule_of(comment)}


def test_shipped_profile_plus_ci_overlay_fills_every_placeholder(tmp_path):
    merged = cluster.render_profile(REPO_ROOT / "profiles/slurm", REPO_ROOT / ".ci/slurm/profile-overlay.yaml",
                                    tmp_path)
    assert cluster.placeholders(yaml.safe_load((tmp_path / "config.yaml").read_text())) == []
    assert merged["retries"] == 3 and merged["executor"] == "slurm"  # kept from the shipped profile
    assert merged["set-resources"]["pretrain"]["slurm_partition"] == "gpu"
    shipped = yaml.safe_load((REPO_ROOT / "profiles/slurm/config.yaml").read_text())
    assert "<ACCOUNT>" in shipped["default-resources"]["slurm_account"]  # the shipped one keeps them
    assert "nodes" not in shipped["set-resources"]["pretrain"]  # train.nodes decides, through the rule


def test_an_overlay_that_leaves_a_placeholder_is_refused(tmp_path):
    (tmp_path / "overlay.yaml").write_text("default-resources: {slurm_account: me}\n")
    with pytest.raises(ValueError, match=r"leaves placeholders: default-resources.slurm_partition: <CPU_PARTITION>"):
        cluster.render_profile(REPO_ROOT / "profiles/slurm", tmp_path / "overlay.yaml", tmp_path / "out")
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_accounting_matches_profile_and_plan():
    jobs = [job("1", "tokenize", mem="2000M"),
            job("2", "pretrain", partition="gpu", cpus="4", mem="3000M", limit="01:30:00", wc="s_softmax"),
            job("3", "pretrain", partition="gpu", cpus="4", mem="3000M", limit="01:30:00", wc="s_softpick")]
    assert cluster.check_accounting(PROFILE, jobs, {"tokenize": 1, "pretrain": 2}) == []
    # wrong partition, CPUs and limit; a missing job; an unplanned rule; a job without a rule
    bad = [job("2", "pretrain", partition="cpu", cpus="1", mem="3000M", limit="00:01:00", wc="s_softmax"),
           job("4", "figure"), job("5", None)]
    problems = cluster.check_accounting(PROFILE, bad, {"pretrain": 2})
    assert "rule pretrain: 1 COMPLETED SLURM jobs, expected 2" in problems
    assert "rule figure: 1 SLURM jobs not in the plan" in problems
    assert "job 2 (rule pretrain): Partition cpu, the profile says gpu" in problems
    assert "job 2 (rule pretrain): ReqCPUS 1, the profile says 4" in problems
    assert "job 2 (rule pretrain): Timelimit 1, the profile says 90" in problems
    assert any(p.startswith("job 5: no Snakemake rule") for p in problems)


def test_timeouts_are_counted():
    jobs = [job("7", "pretrain", state="TIMEOUT", partition="gpu", cpus="4", mem="3000M", limit="01:30:00"),
            job("8", "pretrain", partition="gpu", cpus="4", mem="3000M", limit="01:30:00")]
    assert cluster.check_accounting(PROFILE, jobs, {"pretrain": 1}, min_timeouts=1) == []
    assert cluster.check_accounting(PROFILE, jobs[1:], {"pretrain": 1}, min_timeouts=1) == [
        "0 SLURM jobs ended in TIMEOUT, expected at least 1"]


def test_plan_counts_and_time_limits():
    plan = "Building DAG of jobs...\nJob stats:\njob         count\n--------  -------\nall  1\npretrain  10\ntokenize  1\ntotal  12\n\nrest"
    assert cluster.plan_counts(plan) == {"pretrain": 10, "tokenize": 1}
    assert cluster.plan_counts(plan, {"all", "tokenize"}) == {"pretrain": 10}
    assert [cluster.minutes(t) for t in ("00:01:00", "1-00:00:00", "48:00:00", "00:00:30")] == [1, 1440, 2880, 1]


def test_preflight_names_the_rules_whose_request_sbatch_refuses():
    asked = []

    def sbatch_test(request):
        asked.append(request)
        if request["slurm_partition"] == "gpu":
            return "allocation failure: Invalid partition name specified"
        return None

    problems = cluster.preflight(PROFILE, sbatch_test)
    assert problems == ["pretrain: partition 'gpu', account 'acct', 4 CPUs, 3000 MB, 90 min: "
                        "allocation failure: Invalid partition name specified"]
    assert {"slurm_partition": "cpu", "slurm_account": "acct", "cpus_per_task": 2, "mem_mb": 8000,
            "runtime": 60} in asked  # the default request is checked too


def test_preflight_asks_once_per_distinct_request():
    profile = {"default-resources": {"slurm_account": "a", "slurm_partition": "cpu", "cpus_per_task": 1},
               "set-resources": {"x": {"cpus_per_task": 1}, "y": {"cpus_per_task": 16}, "z": {"mem_mb": 5}}}
    asked = []
    problems = cluster.preflight(profile, lambda r: asked.append(r) or ("too big" if r["cpus_per_task"] > 8 else None))
    assert len(asked) == 3  # default and x ask the same
    assert problems == ["y: partition 'cpu', account 'a', 16 CPUs: too big"]


def test_ci_overlay_scales_down_every_rule_the_shipped_profile_sizes():
    """A rule the shipped profile sizes for a real cluster (16 CPUs for tokenize_shard) but the CI
    overlay forgets would ask the 2-CPU CI node for more than it has and pend for ever."""
    shipped = yaml.safe_load((REPO_ROOT / "profiles/slurm/config.yaml").read_text())
    overlay = yaml.safe_load((REPO_ROOT / ".ci/slurm/profile-overlay.yaml").read_text())
    missing = set(shipped["set-resources"]) - set(overlay["set-resources"])
    assert not missing, f"CI overlay leaves the shipped request of {sorted(missing)}"


slurm = pytest.mark.skipif(shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0,
                           reason="no SLURM cluster answers (bash .ci/slurm/setup.sh starts one)")


@slurm
def test_preflight_against_the_ci_cluster(tmp_path):
    cluster.render_profile(REPO_ROOT / "profiles/slurm", REPO_ROOT / ".ci/slurm/profile-overlay.yaml", tmp_path)
    profile = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cluster.preflight(profile, cluster.sbatch_test_only) == []
    profile["set-resources"]["pretrain"]["slurm_partition"] = "h100-does-not-exist"
    profile["set-resources"]["tokenize_shard"]["cpus_per_task"] = 64  # more than the node has
    problems = cluster.preflight(profile, cluster.sbatch_test_only)
    assert len(problems) == 2, problems
    assert problems[0].startswith("pretrain: partition 'h100-does-not-exist'") and "Invalid partition" in problems[0]
    assert problems[1].startswith("tokenize_shard: partition 'cpu', account 'softpick-ci', 64 CPUs")
    assert all("\n" not in p for p in problems)


def test_local_rules_are_read_from_the_workflow(tmp_path):
    (tmp_path / "Snakefile").write_text("localrules:\n    all,\n    gather,  # why\n\n\nrule all:\n    input: 'x'\n")
    (tmp_path / "rules.smk").write_text("rule a:\n    output: 'a'\n    localrule: True\n\n"
                                        "rule b:\n    output: 'b'\n    threads: 2\n")
    assert cluster.local_rules([tmp_path / "Snakefile", tmp_path / "rules.smk"]) == {"all", "gather", "a"}
    # the shipped workflow: the gather of the token shards runs where Snakemake runs
    assert cluster.local_rules(cluster.workflow_files(REPO_ROOT)) == {"all", "tokenize"}
