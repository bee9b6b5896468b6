"""Per-rule wall time from Snakemake's benchmark files (`benchmark:` directives of the rules).

    python -m softpick_repro.report.job_times BENCHMARKS_DIR [--out FILE.csv]

prints one row per rule: jobs, summed, mean and longest wall seconds, largest max RSS. Jobs that
ran side by side overlap, so the summed seconds are job time, not the pipeline's wall time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

# benchmark path (relative to BENCHMARKS_DIR) -> rule, as the rules in workflow/rules/ spell them
_RULES = (
    (lambda p: p.parts[0] == "train", "pretrain"),
    (lambda p: p.parts[0] == "data", None),  # file stem is the rule: train_tokenizer, tokenize
    (lambda p: p.parts[0] == "analyze", "attention_metrics"),
    (lambda p: p.parts[0] == "deadheads" and p.stem == "masked_eval", "masked_eval"),
    (lambda p: p.parts[0] == "deadheads", "dead_heads"),
    (lambda p: p.parts[0] == "passkey", "passkey"),
    (lambda p: p.parts[0] == "import_released", "import_released"),
    (lambda p: len(p.parts) >= 3 and p.parts[-2] == "eval", "evaluate"),
)


def rule_of(relative: Path) -> str:
    for matches, rule in _RULES:
        if matches(relative):
            return rule or relative.stem
    return relative.parts[0]


def job_times(bench_dir: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        if frame.empty:
            raise ValueError(f"{tsv}: empty benchmark file")
        rows.append({"rule": rule_of(tsv.relative_to(bench_dir)), "s": float(frame["s"].iloc[0]),
                     "max_rss_mb": float(frame["max_rss"].iloc[0])})
    if not rows:
        raise FileNotFoundError(f"no benchmark .tsv files under {bench_dir}")
    table = pd.DataFrame(rows).groupby("rule").agg(
        jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"), max_s=("s", "max"),
        max_rss_mb=("max_rss_mb", "max"))
    return table.sort_values("total_s", ascending=False).round(1).reset_index()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    table = job_times(args.bench_dir)
    if args.out:
        table.to_csv(args.out, index=False)
    print(table.to_string(index=False))
    print(f"all jobs: {table['jobs'].sum()} jobs, {table['total_s'].sum():.0f} s of job time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
