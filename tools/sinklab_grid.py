"""Run many sink-lab settings in parallel processes, within a wall-clock deadline.

Each line of the grid file is one setting: a row name followed by `tools/sinklab_search.py`
flags (blank lines and `#` comments are skipped). Settings start in file order, `--jobs` at a
time; none starts after `--start-by` seconds and any still running at `--deadline` seconds is
stopped, so a GPU call with a hard time limit still returns every finished row. Every row is
appended to `--out` as soon as its process ends (one JSON line, the search driver's format),
so a killed grid loses only the settings then running: run it again with the same `--out`
and the rows already there are skipped.

    python tools/sinklab_grid.py grid.txt --out rows.jsonl --jobs 12 --start-by 420 --deadline 540
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRIVER = Path(__file__).with_name("sinklab_search.py")


def read_grid(path: Path) -> list[tuple[str, list[str]]]:
    settings = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0].startswith("-"):
            raise SystemExit(f"{path}:{number}: a line starts with the row name, got {words[0]!r}")
        settings.append((words[0], words[1:]))
    names = [name for name, _ in settings]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SystemExit(f"{path}: row names repeat: {repeated}")
    return settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--start-by", type=float, default=float("inf"), help="start no setting after this many s")
    p.add_argument("--deadline", type=float, default=float("inf"), help="stop running settings at this many s")
    p.add_argument("--logs", type=Path, default=None, help="folder for each setting's stdout/stderr")
    args = p.parse_args(argv)
    pending = read_grid(args.grid)
    if args.out.exists():
        finished = set()
        for number, line in enumerate(args.out.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                finished.add(json.loads(line)["name"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                # a grid killed while appending can leave half a row: say where, touch nothing
                sys.exit(f"[grid] {args.out} line {number} is not a finished row ({err!r}); "
                         f"remove that line and run again")
        skipped = [name for name, _ in pending if name in finished]
        if skipped:
            print(f"[grid] {len(skipped)} setting(s) already in {args.out}, skipped: {', '.join(skipped)}", flush=True)
        pending = [(name, flags) for name, flags in pending if name not in finished]
    logs = args.logs or Path(tempfile.mkdtemp(prefix="sinklab-grid-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sinklab-grid-"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}   # name -> process, row file, start
    done = failed = stopped = 0
    total = len(pending)
    while pending or running:
        now = time.perf_counter() - start
        while pending and len(running) < args.jobs and now < args.start_by:
            name, flags = pending.pop(0)
            row_file = scratch / f"{name}.jsonl"
            cmd = [sys.executable, str(DRIVER), "--name", name, *flags, "--out", str(row_file)]
            with open(logs / f"{name}.log", "w") as log:   # the child keeps its own descriptor
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), row_file, now)
        if now >= args.start_by and pending:
            print(f"[grid] start-by reached: {len(pending)} setting(s) not started", flush=True)
            pending.clear()
        for name, (proc, row_file, began) in list(running.items()):
            if proc.poll() is None and now < args.deadline:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                stopped += 1
                print(f"[grid] {name}: stopped at the deadline after {now - began:.0f} s", flush=True)
            elif proc.returncode == 0 and row_file.exists():
                with open(args.out, "a") as handle:
                    handle.write(row_file.read_text())
                done += 1
                print(f"[grid] {name}: done in {now - began:.0f} s ({done}/{total})", flush=True)
            else:
                failed += 1
                print(f"[grid] {name}: FAILED (exit {proc.returncode}), log {logs / (name + '.log')}",
                      flush=True)
            del running[name]
        time.sleep(0.5)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"[grid] {done} done, {failed} failed, {stopped} stopped, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
