#!/usr/bin/env bash
# A pretrain job whose SLURM time limit is shorter than its training: SLURM kills it at the
# limit (OverTimeLimit=0 in .ci/slurm/setup.sh), the profile's `retries` resubmit it, each
# attempt resumes from checkpoints/{size}/{arm}/seed_{seed}/{key}/, and the finished run's weights equal, tensor
# for tensor, those of one uninterrupted run of the same training config.
#
#   bash .ci/slurm/timelimit.sh [SIZE/ARM/seed_SEED] [CONFIGFILE ...]   (default micro-s/softmax/seed_79, config/smoke.yaml)
#
# The job gets a 2-minute limit and sleeps 4 s after each step (the trainer's test hook
# SOFTPICK_REPRO_TEST_STEP_SLEEP) so that its 30 steps need over two minutes after the job's
# start-up (Snakemake + imports took up to ~70 s on a loaded 2-core machine); checkpoints every
# 2 steps. The shipped profile's 3 retries suffice: a run there was killed twice (the second
# time after training had finished but before the job ended) and completed on the third attempt.
# Runs in a fresh copy of the checkout (SLURM_CI_TIMELIMIT_WORKDIR); token shards are taken
# from the SLURM run's copy (SLURM_CI_WORKDIR) when it ran the same configs, else built locally.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
RUN=${1:-micro-s/softmax/seed_79}
shift || true
CONFIGS=("$@")
[[ ${#CONFIGS[@]} -gt 0 ]] || CONFIGS=(config/smoke.yaml)
WORK=${SLURM_CI_TIMELIMIT_WORKDIR:-/tmp/softpick-slurm-timelimit}
SLURM_RUN=${SLURM_CI_WORKDIR:-/tmp/softpick-slurm-run}

sinfo -h >/dev/null || { echo "timelimit.sh: no SLURM cluster answers (run .ci/slurm/setup.sh)" >&2; exit 1; }
bash "$REPO"/tools/fresh_copy.sh "$WORK"
cd "$WORK"
export PYTHONPATH=$WORK/src${PYTHONPATH:+:$PYTHONPATH}

cat >timelimit-config.yaml <<'EOF'
train: {ckpt_every: 2}     # resume-free: does not change the weights' trajectory
EOF
cat >timelimit-profile.yaml <<'EOF'
set-resources: {pretrain: {runtime: 2}}   # minutes: shorter than the job's > 2 minutes
EOF
python -m softpick_repro.cluster render-profile profiles/slurm "$REPO/.ci/slurm/profile-overlay.yaml" .ci-profile
python -m softpick_repro.cluster render-profile .ci-profile timelimit-profile.yaml .ci-profile-timelimit
CONFIGS+=(timelimit-config.yaml)
target=results/$RUN/train/summary.json

if [[ -f $SLURM_RUN/results/data/tokens/manifest.json && $(cat "$SLURM_RUN/.ci-configs" 2>/dev/null) == "${CONFIGS[*]:0:${#CONFIGS[@]}-1}" ]]; then
    mkdir -p results && cp -a "$SLURM_RUN/results/data" results/
fi
snakemake --cores 2 results/data/tokens/manifest.json --quiet --configfile "${CONFIGS[@]}"
snakemake -n "$target" --configfile "${CONFIGS[@]}" >plan.txt
since=$(date +%Y-%m-%dT%H:%M:%S)
start=$(date +%s)
python -m softpick_repro.cluster check-profile .ci-profile-timelimit
if ! SOFTPICK_REPRO_TEST_STEP_SLEEP=4 timeout "${SLURM_CI_RUN_TIMEOUT:-1800}" \
        snakemake --profile .ci-profile-timelimit "$target" --configfile "${CONFIGS[@]}"; then
    echo "error: the time-limited run failed or outlived SLURM_CI_RUN_TIMEOUT=${SLURM_CI_RUN_TIMEOUT:-1800} s; the queue:" >&2
    squeue -o "%.8i %.10P %.30j %.9T %.6C %.8m %R" >&2 || true
    exit 1
fi
echo "time-limited pretrain wall time: $(( $(date +%s) - start )) s"
python -m softpick_repro.cluster check-accounting --profile .ci-profile-timelimit --plan plan.txt \
    --since "$since" --min-timeouts 1
python -m softpick_repro.cluster compare-uninterrupted "results/$RUN/train" results/data/tokens
