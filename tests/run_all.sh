#!/usr/bin/env bash
# The project's test command: unit tests, then an end-to-end Snakemake run of the smoke config.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -n 2 --durations=15 tests   # pytest-xdist: the end-to-end tests run beside the unit tests; the 15 slowest printed
start=$(date +%s)
snakemake --cores 2 --configfile config/smoke.yaml --rerun-incomplete --show-failed-logs --scheduler greedy  # greedy: the ILP solver took a fifth of a core all run
echo "smoke pipeline wall time: $(( $(date +%s) - start )) s"
# Snakemake's own report of the smoke run (tables, figures and verdicts with their captions)
snakemake --cores 1 --configfile config/smoke.yaml --report results/snakemake_report.html
