"""tools/sinklab_search.py, the driver behind docs/SINKLAB.md's table, still runs end to end:
a few steps of both arms on its synthetic shards (the trainer's shard checks included), one
JSON row with both arms' measurements, and the row renders as the table."""
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_driver_trains_measures_and_tabulates(tmp_path):
    out = tmp_path / "rows.jsonl"
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "sinklab_search.py"), "--name", "ci", "--steps", "3",
           "--batch", "2", "--seq-len", "32", "--eval-docs", "4", "--out", str(out), "--work", str(tmp_path / "w")]
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(row["arms"]) == {"softmax", "softpick"}
    for arm in row["arms"].values():
        assert 0.0 <= arm["sink_eps0.3"] <= 100.0 and arm["max_abs"] > 0 and arm["val_loss"] > 0
    table = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "sinklab_search.py"), "table", str(out)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "| ci |" in table.stdout, table.stdout + table.stderr
