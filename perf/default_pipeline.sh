#!/usr/bin/env bash
# Benchmark: the wall time of the full default pipeline (tiny models, embedded data, CPU, offline)
# from a fresh copy of the checkout, i.e. every one of its jobs. Was part of CI; moved here so
# that CI fits its hour (.ci/run). Anyone can run it:
#   bash perf/default_pipeline.sh [CORES]      (default 2, the CI machine's count)
# Prints "default pipeline wall time: N s (J jobs, C cores)"; the run is left in
# DEFAULT_PIPELINE_WORKDIR (default /tmp/softpick-default-pipeline) for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
CORES=${1:-2}
WORK=${DEFAULT_PIPELINE_WORKDIR:-/tmp/softpick-default-pipeline}
bash tools/fresh_copy.sh "$WORK"
cd "$WORK"
export PYTHONPATH=$WORK/src${PYTHONPATH:+:$PYTHONPATH}
jobs=$(snakemake -n 2>/dev/null | awk '$1 == "total" {print $2}')
start=$(date +%s)
snakemake --cores "$CORES" --show-failed-logs
echo "default pipeline wall time: $(( $(date +%s) - start )) s (${jobs} jobs, ${CORES} cores; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs visible)"
