"""The GPU install and the per-rule job-time summary of a GPU run."""
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from softpick_repro.config import REPO_ROOT
from softpick_repro.report.job_times import job_times, rule_of


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = req
    return pins


def test_cuda_constraints_agree_with_pyproject():
    """envs/constraints-cuda.txt (what ran on the GPU) satisfies every pyproject requirement."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["slurm"])
    ran = _pins((REPO_ROOT / "envs/constraints-cuda.txt").read_text().splitlines())
    assert str(ran["torch"].specifier) == "==2.11.0" and str(ran["triton"].specifier) == "==3.6.0"
    for name, req in wanted.items():
        if name not in ran:
            continue  # provided by the GPU image itself (numpy, pandas, ...): tools/gpu_image_packages.txt
        version = next(iter(ran[name].specifier)).version
        assert req.specifier.contains(version, prereleases=True), f"{name}: ran {version}, pyproject wants {req.specifier}"


def test_job_times_groups_benchmark_files_by_rule(tmp_path):
    def bench(rel, seconds):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t{seconds * 10}\n")

    bench("train/tiny-s/softmax.tsv", 10.0)
    bench("train/tiny-s/softpick.tsv", 30.0)
    bench("tiny-s/softmax/eval/hqq2.tsv", 5.0)
    bench("deadheads/tiny-s/softpick/masked_eval.tsv", 2.0)
    bench("deadheads/tiny-s/softpick/step_10.tsv", 1.0)
    bench("data/tokenize.tsv", 4.0)
    table = job_times(tmp_path).set_index("rule")
    assert table.loc["pretrain", "jobs"] == 2 and table.loc["pretrain", "total_s"] == 40.0
    assert table.loc["pretrain", "max_s"] == 30.0 and table.loc["pretrain", "max_rss_mb"] == 300.0
    assert set(table.index) == {"pretrain", "evaluate", "masked_eval", "dead_heads", "tokenize"}
    assert rule_of(Path("analyze/tiny-s/softmax/attention_final.tsv")) == "attention_metrics"


def test_job_times_rejects_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark"):
        job_times(tmp_path)
