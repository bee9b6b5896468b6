"""tools/sinklab_search.py, the driver behind docs/SINKLAB.md's tables, still runs end to end
through tools/sinklab_grid.py, the parallel runner of the GPU map: a few steps of both arms on
the driver's synthetic shards (the trainer's shard checks included), one JSON row with both
arms' measurements, a broken setting reported without losing the good row, and both renderings."""
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS = REPO_ROOT / "tools"


def _tool(*args, timeout=120):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_grid_runs_the_driver_keeps_good_rows_and_reports_bad_ones(tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text("# a comment line\n"
                    "ci --steps 3 --batch 2 --seq-len 32 --eval-docs 4\n\n"
                    "broken --steps 3 --no-such-flag\n")
    out, logs = tmp_path / "rows.jsonl", tmp_path / "logs"
    run = _tool(TOOLS / "sinklab_grid.py", grid, "--out", out, "--jobs", "2", "--logs", logs, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr          # one setting failed
    assert "broken: FAILED" in run.stdout and "ci: done" in run.stdout, run.stdout
    assert "--no-such-flag" in (logs / "broken.log").read_text()
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["name"] == "ci" and set(row["arms"]) == {"softmax", "softpick"}
    for arm in row["arms"].values():
        assert 0.0 <= arm["sink_eps0.3"] <= 100.0 and arm["max_abs"] > 0 and arm["val_loss"] > 0
        entries = len(arm["max_abs_per_entry"])             # embedding, 1 inner layer, final norm
        assert entries == 3
        for key in ("bos_max_abs_per_entry", "rest_max_abs_per_entry", "kurtosis_per_entry", "rms_per_entry"):
            assert len(arm[key]) == entries, key
        # the peak over all tokens is the larger of the BOS peak and the peak elsewhere
        for total, bos, rest in zip(arm["max_abs_per_entry"], arm["bos_max_abs_per_entry"],
                                    arm["rest_max_abs_per_entry"]):
            assert abs(total - max(bos, rest)) <= 1e-3 * total   # two forwards, two attention paths
    table = _tool(TOOLS / "sinklab_search.py", "table", out)
    assert table.returncode == 0 and "| ci |" in table.stdout, table.stdout + table.stderr
    summary = _tool(TOOLS / "sinklab_search.py", "summary", out)
    assert summary.returncode == 0 and "| ci |" in summary.stdout, summary.stdout + summary.stderr
    # a rerun into the same file (after a kill, say) skips the finished row and retries the rest
    again = _tool(TOOLS / "sinklab_grid.py", grid, "--out", out, "--logs", logs, timeout=600)
    assert "already in" in again.stdout and "ci: done" not in again.stdout, again.stdout
    assert "broken: FAILED" in again.stdout and len(out.read_text().splitlines()) == 1


def test_grid_rejects_a_line_without_a_name(tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text("--steps 3\n")
    run = _tool(TOOLS / "sinklab_grid.py", grid, "--out", tmp_path / "rows.jsonl")
    assert run.returncode != 0 and "starts with the row name" in run.stderr, run.stderr


def test_criteria_and_rows_of_arms_run_as_separate_processes(tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import sinklab_search as driver
    finally:
        sys.path.remove(str(TOOLS))

    def arm(sink, kurtosis, max_abs, wall):
        return {"sink_eps0.3": sink, "kurtosis": kurtosis, "max_abs": max_abs, "wall_s": wall, "val_loss": 3.1}

    def row(name, argv, device="cpu", **arms):
        return {"name": name, "argv": ["--name", name, *argv], "device": device, "arms": arms}

    good = arm(50.0, 120.0, 60.0, 500)
    clean = arm(0.0, 6.0, 5.0, 550)
    assert driver.criteria(row("a", [], softmax=good, softpick=clean)) == (True, True)
    # the same numbers from the GPU meet criteria 1-3, never the CPU budget
    assert driver.criteria(row("a", ["--device", "cuda"], "cuda", softmax=good, softpick=clean)) == (True, False)
    assert driver.criteria(row("a", [], softmax=good, softpick={**clean, "wall_s": 601})) == (True, False)
    assert driver.criteria(row("a", [], softmax=good, softpick={**clean, "sink_eps0.3": 0.5}))[0] is False
    assert driver.criteria(row("a", [], softmax={**good, "max_abs": 49.0}, softpick=clean))[0] is False
    assert driver.criteria(row("a", ["--seq-len", "32"], softmax=good, softpick=clean))[0] is False

    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in (
        row("split", ["--arms", "softmax"], softmax=good), row("other", [], softmax=good, softpick=clean),
        row("split", ["--arms", "softpick"], softpick=clean))) + "\n")
    merged = driver.merged_rows([str(rows)])
    assert [r["name"] for r in merged] == ["split", "other"]
    assert set(merged[0]["arms"]) == {"softmax", "softpick"}
    lines = driver.summary_table([str(rows)]).splitlines()[2:]
    assert len(lines) == 2 and all(line.endswith("| yes | yes |") for line in lines)


def test_grid_rerun_names_a_half_written_row(tmp_path):
    grid, out = tmp_path / "grid.txt", tmp_path / "rows.jsonl"
    grid.write_text("ci --steps 3\n")
    out.write_text('{"name": "done", "arms": {}}\n{"name": "ha')
    run = _tool(TOOLS / "sinklab_grid.py", grid, "--out", out)
    assert run.returncode != 0
    assert f"{out} line 2 is not a finished row" in run.stderr, run.stderr
    assert out.read_text().endswith('{"name": "ha')   # nothing rewritten
