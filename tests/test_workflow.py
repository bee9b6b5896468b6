"""The workflow plans for every config, lints clean, and rejects bad configs before any job."""
import subprocess
import sys
from pathlib import Path

import pytest

from softpick_repro.config import REPO_ROOT


def snakemake(*args, cwd=REPO_ROOT):
    # --nolock: a dry run must not wait for (or disturb) a pipeline running in the same tree
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--nolock", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


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


@pytest.mark.parametrize("overlay", [[], ["--configfile", "config/smoke.yaml"], ["--configfile", "config/paper.yaml"],
                                     ["--configfile", "config/sinklab.yaml"]])
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
