"""SLURM glue that is not Snakemake's: a profile overlay for a given site, and reading back
what SLURM's accounting recorded for a run (`python -m softpick_repro.cluster --help`).

- `render_profile`: the shipped `profiles/slurm/config.yaml` deep-merged with a site overlay
  (dicts merge key by key, anything else is replaced), refused while a `<PLACEHOLDER>` is left.
  CI uses it with `.ci/slurm/profile-overlay.yaml`; a site may too.
- `sacct_jobs` / `check_accounting`: every job of a run as `sacct` saw it, checked against the
  profile: each rule's job count, the final state, and for the rules the profile sets
  resources for, partition, account, CPUs, memory and time limit.
- `preflight` (`check-profile`): before a run, every request the profile makes (per rule:
  partition, account, CPUs, memory, time limit) put to `sbatch --test-only`, so a request no
  node can satisfy fails at once instead of pending in the queue for ever.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from softpick_repro.io import atomic_write_text

PLACEHOLDER = re.compile(r"<[A-Z_]+>")
SACCT_FIELDS = ("JobID", "State", "Partition", "Account", "ReqCPUS", "ReqMem", "Timelimit",
                "ElapsedRaw", "WorkDir", "Comment")


def deep_merge(base: dict, overlay: dict) -> dict:
    """`overlay` over `base`: nested dicts merge, every other value is replaced."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def placeholders(value, path: str = "") -> list[str]:
    """'key.path: <NAME>' for each placeholder string left in a profile."""
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in placeholders(v, f"{path}{k}.")]
    if isinstance(value, str) and PLACEHOLDER.search(value):
        return [f"{path.rstrip('.')}: {value}"]
    return []


def render_profile(base_dir: str | Path, overlay_file: str | Path, out_dir: str | Path) -> dict:
    """Write `out_dir/config.yaml` = the profile in `base_dir` with the overlay applied."""
    base = yaml.safe_load((Path(base_dir) / "config.yaml").read_text())
    overlay = yaml.safe_load(Path(overlay_file).read_text()) or {}
    merged = deep_merge(base, overlay)
    left = placeholders(merged)
    if left:
        raise ValueError(f"profile overlay {overlay_file} leaves placeholders: {'; '.join(left)}")
    header = f"# generated from {base_dir}/config.yaml + {overlay_file} (softpick_repro.cluster)\n"
    atomic_write_text(Path(out_dir) / "config.yaml", header + yaml.safe_dump(merged, sort_keys=False))
    return merged


REQUEST_KEYS = ("slurm_partition", "slurm_account", "cpus_per_task", "mem_mb", "runtime")


def rule_requests(profile: dict) -> dict[str, dict]:
    """rule (or 'default') -> what the profile asks SLURM for on its behalf: default-resources
    with the rule's set-resources over them, limited to the keys sbatch can check up front."""
    default = {k: v for k, v in (profile.get("default-resources") or {}).items() if k in REQUEST_KEYS}
    requests = {"default": default}
    for rule, res in (profile.get("set-resources") or {}).items():
        requests[rule] = {**default, **{k: v for k, v in (res or {}).items() if k in REQUEST_KEYS}}
    return requests


def describe(request: dict) -> str:
    parts = [f"partition {request.get('slurm_partition')!r}", f"account {request.get('slurm_account')!r}"]
    if "cpus_per_task" in request:
        parts.append(f"{request['cpus_per_task']} CPUs")
    if "mem_mb" in request:
        parts.append(f"{request['mem_mb']} MB")
    if "runtime" in request:
        parts.append(f"{request['runtime']} min")
    return ", ".join(parts)


def preflight(profile: dict, sbatch_test) -> list[str]:
    """One line per distinct request of the profile that sbatch refuses, checked before the run:
    a partition or account that does not exist, or CPUs, memory or a time limit that no node of
    the partition can give (SLURM would otherwise queue such a job for ever, and the executor
    plugin would wait on it). `sbatch_test(request)` returns sbatch's error, or None."""
    by_request: dict[tuple, list[str]] = {}
    for rule, request in rule_requests(profile).items():
        by_request.setdefault(tuple(sorted(request.items())), []).append(rule)
    problems = []
    for key, rules in by_request.items():
        request = dict(key)
        error = sbatch_test(request)
        if error:
            problems.append(f"{', '.join(rules)}: {describe(request)}: {error}")
    return sorted(problems)


def sbatch_test_only(request: dict) -> str | None:
    """`sbatch --test-only` of one request (validates, submits nothing): its last error line, or
    None when SLURM could run it."""
    command = ["sbatch", "--test-only", "-p", str(request.get("slurm_partition")), "--wrap", "true"]
    flags = {"slurm_account": "-A", "cpus_per_task": "-c", "mem_mb": "--mem", "runtime": "-t"}
    for key, flag in flags.items():
        if request.get(key) is not None:
            command += [flag, str(request[key])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"sbatch exited {result.returncode}"


def minutes(timelimit: str) -> int:
    """sacct's Timelimit ([D-]HH:MM:SS or MM:SS) in whole minutes."""
    days, _, clock = timelimit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, mins, secs = parts
    return (int(days or 0) * 24 + hours) * 60 + mins + (1 if secs else 0)


def rule_of(comment: str) -> str | None:
    """The rule name in the executor plugin's job comment `rule_<name>[_wildcards_...]`."""
    match = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment or "")
    return match.group(1) if match else None


def sacct_jobs(since: str, account: str | None = None, workdir: str | Path | None = None) -> list[dict]:
    """Allocations (not steps) since `since` (sacct -S syntax), one dict per job; only those of
    one run when `workdir` is given (the plugin submits each job with -D <workdir>)."""
    command = ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(SACCT_FIELDS)]
    if account:
        command += ["-A", account]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        values = line.split("|", len(SACCT_FIELDS) - 1)
        if len(values) == len(SACCT_FIELDS):
            job = dict(zip(SACCT_FIELDS, values))
            job["rule"] = rule_of(job["Comment"])
            if workdir is None or Path(job["WorkDir"]).resolve() == Path(workdir).resolve():
                jobs.append(job)
    return jobs


def expected_resources(profile: dict, rule: str) -> dict:
    """What the profile fixes for a rule's jobs: partition and account always, CPUs, memory
    and minutes where set-resources names the rule (else the rule's own resources decide)."""
    default = profile.get("default-resources", {})
    own = profile.get("set-resources", {}).get(rule)
    merged = {**default, **(own or {})}
    want = {"Partition": merged.get("slurm_partition"), "Account": merged.get("slurm_account")}
    if own is not None:
        want.update({"ReqCPUS": merged.get("cpus_per_task"), "ReqMem": merged.get("mem_mb"),
                     "Timelimit": merged.get("runtime")})
    return {k: v for k, v in want.items() if v is not None}


def check_accounting(profile: dict, jobs: list[dict], expected_counts: dict[str, int],
                     final_state: str = "COMPLETED", min_timeouts: int = 0) -> list[str]:
    """Problems found (empty = the run is as the profile says): one line each."""
    problems = []
    timeouts = sum(j["State"].split()[0] == "TIMEOUT" for j in jobs)
    if timeouts < min_timeouts:
        problems.append(f"{timeouts} SLURM jobs ended in TIMEOUT, expected at least {min_timeouts}")
    done = Counter(j["rule"] for j in jobs if j["State"].split()[0] == final_state)
    for rule, count in sorted(expected_counts.items()):
        if done[rule] != count:
            problems.append(f"rule {rule}: {done[rule]} {final_state} SLURM jobs, expected {count}")
    for rule in sorted(set(done) - set(expected_counts) - {None}):
        problems.append(f"rule {rule}: {done[rule]} SLURM jobs not in the plan")
    for job in jobs:
        if job["rule"] is None:
            problems.append(f"job {job['JobID']}: no Snakemake rule in its comment {job['Comment']!r}")
            continue
        for field, want in expected_resources(profile, job["rule"]).items():
            got = job[field]
            if field == "ReqMem":
                got = int(re.match(r"(\d+)", got).group(1)) if re.match(r"\d+", got) else got
            elif field == "Timelimit":
                got = minutes(got)
            elif field == "ReqCPUS":
                got = int(got)
            if str(got) != str(want):
                problems.append(f"job {job['JobID']} (rule {job['rule']}): {field} {got}, "
                                f"the profile says {want}")
    return problems


def accounting_table(jobs: list[dict]) -> str:
    """Per rule: jobs, states, partition, CPUs, memory, time limit, summed elapsed seconds."""
    rows = {}
    for job in jobs:
        row = rows.setdefault(job["rule"], {"jobs": 0, "states": Counter(), "elapsed": 0,
                                            "res": set()})
        row["jobs"] += 1
        row["states"][job["State"].split()[0]] += 1
        row["elapsed"] += int(job["ElapsedRaw"] or 0)
        row["res"].add(f"{job['Partition']} {job['ReqCPUS']} CPU {job['ReqMem']} {job['Timelimit']}")
    lines = [f"{'rule':<34} {'jobs':>4}  {'states':<26} {'elapsed s':>9}  partition/CPUs/mem/limit"]
    for rule in sorted(rows, key=str):
        row = rows[rule]
        states = ",".join(f"{s}:{n}" for s, n in sorted(row["states"].items()))
        lines.append(f"{str(rule):<34} {row['jobs']:>4}  {states:<26} {row['elapsed']:>9}  "
                     f"{'; '.join(sorted(row['res']))}")
    return "\n".join(lines)


def local_rules(workflow_files) -> set[str]:
    """Rules that run in the Snakemake process itself, never through sbatch: those named by a
    `localrules:` directive and those whose body sets `localrule: True` (read from the text of
    the Snakefile and its rule files, no workflow is loaded)."""
    found: set[str] = set()
    for path in workflow_files:
        current, in_directive = None, False
        for line in Path(path).read_text().splitlines():
            stripped = line.split("#", 1)[0].rstrip()
            if re.match(r"^localrules\s*:", stripped):
                in_directive = True
                stripped = stripped.split(":", 1)[1]
            elif in_directive and stripped and not stripped.startswith((" ", "\t")):
                in_directive = False
            if in_directive:
                found.update(name.strip() for name in stripped.split(",") if name.strip())
                continue
            rule = re.match(r"^rule\s+(\w+)\s*:", stripped)
            if rule:
                current = rule.group(1)
            elif current and re.match(r"^\s+localrule\s*:\s*True\b", stripped):
                found.add(current)
    return found


def workflow_files(root: str | Path = ".") -> list[Path]:
    root = Path(root)
    return [root / "Snakefile", *sorted((root / "workflow" / "rules").glob("*.smk"))]


def plan_counts(dry_run_output: str, local: set[str] | frozenset = frozenset({"all"})) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table of `snakemake -n`, less the total and the
    `local` rules (run by Snakemake itself, never submitted)."""
    counts, in_table = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip()) if in_table else None
        if match:
            counts[match.group(1)] = int(match.group(2))
        elif in_table and counts and not line.strip():
            break
    counts.pop("total", None)
    return {rule: n for rule, n in counts.items() if rule not in local}


def _compare_uninterrupted(run_dir: Path, tokens_dir: Path) -> int:
    import tempfile

    from softpick_repro.io import load_json
    from softpick_repro.train import compare_weight_files, train

    summary = load_json(run_dir / "summary.json")
    print(f"{run_dir}: resumed at steps {summary['resumed_from_steps']}")
    with tempfile.TemporaryDirectory() as scratch:
        train(summary["train_config"], tokens_dir=tokens_dir, ckpt_dir=Path(scratch) / "ckpt",
              out_dir=Path(scratch) / "out", progress=False)
        problems = compare_weight_files(run_dir / "weights", Path(scratch) / "out" / "weights")
    if not summary["resumed_from_steps"]:
        problems.append("the run was never resumed: it proves nothing about resuming")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print(f"{run_dir}: every tensor of weights/*.safetensors equals the uninterrupted run's")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softpick_repro.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render-profile", help="profile + overlay -> a profile directory")
    render.add_argument("base_dir")
    render.add_argument("overlay")
    render.add_argument("out_dir")
    pre = sub.add_parser("check-profile", help="every request of a profile (partition, account, CPUs, memory, time) fits the cluster (before a run)")
    pre.add_argument("profile_dir")
    check = sub.add_parser("check-accounting", help="sacct of a run against the profile and the plan")
    check.add_argument("--profile", required=True, help="the profile directory the run used")
    check.add_argument("--plan", required=True, help="file holding the `snakemake -n` output")
    check.add_argument("--since", required=True, help="sacct -S: when the run started")
    check.add_argument("--workdir", default=".", help="the run's working directory (default: here)")
    check.add_argument("--final-state", default="COMPLETED")
    check.add_argument("--min-timeouts", type=int, default=0, help="jobs that must have hit their limit")
    compare = sub.add_parser("compare-uninterrupted",
                             help="retrain a finished run without interruption, compare its weights")
    compare.add_argument("run_dir", help="results/{size}/{arm}/seed_{seed}/train of the finished run")
    compare.add_argument("tokens_dir")
    args = parser.parse_args(argv)
    if args.command == "compare-uninterrupted":
        return _compare_uninterrupted(Path(args.run_dir), Path(args.tokens_dir))
    if args.command == "render-profile":
        try:
            render_profile(args.base_dir, args.overlay, args.out_dir)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "check-profile":
        profile = yaml.safe_load((Path(args.profile_dir) / "config.yaml").read_text())
        problems = preflight(profile, sbatch_test_only)
        for line in problems:
            print(f"error: profile {args.profile_dir}: {line}", file=sys.stderr)
        return 1 if problems else 0
    profile = yaml.safe_load((Path(args.profile) / "config.yaml").read_text())
    account = profile.get("default-resources", {}).get("slurm_account")
    jobs = sacct_jobs(args.since, account, args.workdir)
    print(accounting_table(jobs))
    local = local_rules(workflow_files(args.workdir))
    problems = check_accounting(profile, jobs, plan_counts(Path(args.plan).read_text(), local),
                                args.final_state, args.min_timeouts)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(jobs)} SLURM jobs, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
