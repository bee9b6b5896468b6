#!/usr/bin/env bash
# Run the pipeline through `--profile profiles/slurm` on the CI cluster (.ci/slurm/setup.sh),
# then check SLURM's accounting and compare the tables with a local run of the same config.
#
#   bash .ci/slurm/run.sh LOCAL_RUN_DIR [CONFIGFILE ...]     (default config/smoke.yaml)
#
# LOCAL_RUN_DIR holds a finished local run of the same configs (results/tables/); tests/run_all.sh
# leaves one in the checkout for config/smoke.yaml. The SLURM run happens in a fresh copy of the
# checkout's files (SLURM_CI_WORKDIR, default /tmp/softpick-slurm-run), so it shares nothing with
# the local run. Checks, each fatal:
#   1. every job of the plan was submitted with sbatch and COMPLETED once (sacct, by rule);
#   2. partition, account, CPUs, memory and time limit in sacct are what the profile sets per rule;
#   3. every table the SLURM run made (results/tables/**/*.csv, *.md, per-seed tables too) equals
#      the local run's byte for byte, i.e. to the printed decimals.
# SLURM_CI_TARGETS (space-separated files) limits the SLURM run to those targets and what they need
# (CI: the training, export, attention-metric and table jobs behind seed 79's Table 2, Table 6 and
# Figure 2, so CI fits its budget); empty = the whole DAG.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
LOCAL=$(cd "${1:?usage: run.sh LOCAL_RUN_DIR [CONFIGFILE ...]}" && pwd)
shift
CONFIGS=("$@")
[[ ${#CONFIGS[@]} -gt 0 ]] || CONFIGS=(config/smoke.yaml)
WORK=${SLURM_CI_WORKDIR:-/tmp/softpick-slurm-run}

[[ -d $LOCAL/results/tables ]] || { echo "run.sh: no local run in $LOCAL (results/tables missing)" >&2; exit 1; }
sinfo -h >/dev/null || { echo "run.sh: no SLURM cluster answers (run .ci/slurm/setup.sh)" >&2; exit 1; }

# A fresh copy of the checkout (tracked and not-ignored files): no results, no checkpoints.
bash "$REPO"/tools/fresh_copy.sh "$WORK"
cd "$WORK"
export PYTHONPATH=$WORK/src${PYTHONPATH:+:$PYTHONPATH}
python -m softpick_repro.cluster render-profile profiles/slurm "$REPO/.ci/slurm/profile-overlay.yaml" .ci-profile
python -m softpick_repro.cluster check-profile .ci-profile

read -r -a TARGETS <<<"${SLURM_CI_TARGETS:-}"
snakemake -n "${TARGETS[@]}" --configfile "${CONFIGS[@]}" >plan.txt
echo "${CONFIGS[*]}" >.ci-configs   # lets timelimit.sh reuse the token shards of the same config
since=$(date +%Y-%m-%dT%H:%M:%S)
start=$(date +%s)
# A watchdog: a job SLURM cannot place pends for ever and Snakemake waits on it; CI should fail
# with the queue's reasons instead of running into its own time limit.
if ! timeout "${SLURM_CI_RUN_TIMEOUT:-1800}" snakemake --profile .ci-profile "${TARGETS[@]}" --configfile "${CONFIGS[@]}"; then
    echo "error: the SLURM run failed or outlived SLURM_CI_RUN_TIMEOUT=${SLURM_CI_RUN_TIMEOUT:-1800} s; the queue:" >&2
    squeue -o "%.8i %.10P %.30j %.9T %.6C %.8m %R" >&2 || true
    exit 1
fi
echo "SLURM pipeline wall time: $(( $(date +%s) - start )) s (${CONFIGS[*]})"

python -m softpick_repro.cluster check-accounting --profile .ci-profile --plan plan.txt --since "$since"

status=0
compared=0
while IFS= read -r -d '' slurm_table; do
    name=${slurm_table#"$WORK"/}
    local_table=$LOCAL/$name
    compared=$((compared + 1))
    if ! cmp -s "$local_table" "$slurm_table"; then
        echo "error: $name differs between the local and the SLURM run:" >&2
        diff "$local_table" "$WORK/$name" | head -5 >&2 || true
        status=1
    fi
done < <(find "$WORK/results/tables" \( -name '*.csv' -o -name '*.md' \) -print0 | sort -z)
[[ $compared -gt 0 ]] || { echo "error: the SLURM run made no table to compare" >&2; status=1; }
echo "tables compared with the local run in $LOCAL: $compared, differing: $([[ $status == 0 ]] && echo 0 || echo some)"
exit $status
