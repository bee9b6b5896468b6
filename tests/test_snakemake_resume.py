"""A real Snakemake run killed with SIGKILL resumes with the README's sequence, and a changed
training setting retrains without deleting anything by hand (issue 21, items 3 and 4).

Runs the smoke config's micro-s/softmax training in a copy of the workflow (tokenizer,
tokens, 30 steps: about a minute per run on two busy cores)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softpick_repro.io import load_json

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = "results/micro-s/softmax/seed_79/train"   # smoke config: first seed 79
TARGET = f"{RUN}/summary.json"


def snakemake(workdir, *args, env=None, popen=False):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    full_env = {**os.environ, **(env or {})}
    if popen:
        return subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    result = subprocess.run(cmd, cwd=workdir, env=full_env, capture_output=True, text=True, timeout=900)
    result.output = result.stdout + result.stderr
    return result


def descendants(pid):
    """Process ids below `pid` (from /proc), so every process this test started is killed."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sigkill_tree(proc):
    """SIGKILL Snakemake and every process it started, all at once, like a node failure."""
    pids = [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    for item in ("Snakefile", "workflow", "src", "config", "data", "envs"):
        src = REPO_ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    return root


def checkpoints(workdir):
    return sorted((workdir / "checkpoints" / "micro-s" / "softmax" / "seed_79").glob("*/checkpoint.pt"))


@pytest.fixture(scope="module")
def killed_and_resumed(workdir):
    proc = snakemake(workdir, TARGET, "--configfile", "config/smoke.yaml", popen=True,
                     env={"SOFTPICK_REPRO_TEST_STEP_SLEEP": "0.4"})
    deadline = time.time() + 600
    while not checkpoints(workdir):  # the step-10 checkpoint: mid-run, 20 steps to go
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "training never wrote its first checkpoint"
        time.sleep(0.5)
    sigkill_tree(proc)
    assert not (workdir / TARGET).exists()
    plain = snakemake(workdir, "--rerun-incomplete", TARGET, "--configfile", "config/smoke.yaml")
    # The README's resume sequence, verbatim (README.md, "Set up and run").
    unlock = snakemake(workdir, "--unlock", "--configfile", "config/smoke.yaml")
    resume = snakemake(workdir, "--rerun-incomplete", TARGET, "--configfile", "config/smoke.yaml")
    return plain, unlock, resume


def test_sigkilled_run_resumes_with_the_readme_sequence(workdir, killed_and_resumed):
    _, unlock, resume = killed_and_resumed
    assert unlock.returncode == 0, unlock.output[-3000:]
    assert resume.returncode == 0, resume.output[-3000:]
    assert "LockException" not in resume.output
    summary = load_json(workdir / TARGET)
    assert summary["last_step"] == 30 and summary["resumed_from_steps"] and summary["resumed_from_steps"][0] >= 10
    rows = (workdir / RUN / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 31))


def test_without_unlock_the_plain_command_is_locked(killed_and_resumed):
    # Why the README says --unlock first: a SIGKILLed Snakemake leaves its lock behind.
    plain = killed_and_resumed[0]
    assert plain.returncode != 0 and "LockException" in plain.output, plain.output[-2000:]


def test_changed_setting_retrains_and_keeps_the_previous_run(workdir, killed_and_resumed):
    first = load_json(workdir / TARGET)
    assert first["train_config"]["lr"] == 3e-3
    overlay = workdir / "lr.yaml"
    sizes = (workdir / "config" / "smoke.yaml").read_text().split("sizes:\n")[1].split("train:\n")[0]
    overlay.write_text("sizes:\n" + sizes.replace("lr: 3.0e-3", "lr: 1.0e-3"))
    changed = snakemake(workdir, TARGET, "--configfile", "config/smoke.yaml", str(overlay))
    assert changed.returncode == 0, changed.output[-3000:]
    assert f"NOTE: {RUN} was trained with other settings (lr: 0.003 -> 0.001)" in changed.output
    second = load_json(workdir / TARGET)
    assert second["train_config"]["lr"] == 1e-3 and second["resumed_from_steps"] == []
    dirs = sorted(p.parent for p in checkpoints(workdir))
    assert len(dirs) == 2
    kept = [d for d in dirs if (d / "published" / "summary.json").exists()
            and load_json(d / "published" / "summary.json")["train_config"]["lr"] == 3e-3]
    assert len(kept) == 1 and (kept[0] / "published" / "weights" / "final.safetensors").is_file()
    # Back to the first setting: its directory resumes at step 30, nothing is trained again.
    back = snakemake(workdir, TARGET, "--configfile", "config/smoke.yaml")
    assert back.returncode == 0, back.output[-3000:]
    third = load_json(workdir / TARGET)
    assert third["train_config"]["lr"] == 3e-3 and third["resumed_from_steps"][-1] == 30
    final = "weights/final.safetensors"
    assert (workdir / RUN / final).read_bytes() == (kept[0] / "published" / final).read_bytes()
