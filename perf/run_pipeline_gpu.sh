#!/usr/bin/env bash
# The whole DAG on one GPU (config/gpu.yaml), in resumable pieces: each call runs Snakemake for at
# most LIMIT seconds, then packs what it measured into OUT_DIR. Call it again to go on (a killed
# run leaves a lock, so every call unlocks first; training resumes from checkpoints/).
#
#   bash perf/run_pipeline_gpu.sh OUT_DIR [LIMIT_S] [GPU_SLOTS]
#
# Python packages: the machine's own CUDA torch and Triton, plus the wheels of
# tools/gpu_wheels.sh in .whl/ (installed once into /tmp/site) when the image lacks them.
# OUT_DIR gets device.txt (GPU, driver, versions), gpu_pipeline.tar.gz (Snakemake's benchmark
# files, logs, tables, training metrics, the report) and status.txt (jobs done / left).
set -uo pipefail
out=${1:?usage: perf/run_pipeline_gpu.sh OUT_DIR [LIMIT_S] [GPU_SLOTS]}
limit=${2:-540}
slots=${3:-4}
mkdir -p "$out"
if [ -d .whl ] && [ ! -e /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && touch /tmp/site/.installed || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/site/bin:$PATH"
export PYTHONPATH="$PWD/src:$PYTHONPATH" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, torch, triton, transformers, snakemake, lm_eval, hqq, bitsandbytes, llmcompressor, fla
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)
print('transformers', transformers.__version__, 'snakemake', snakemake.__version__, 'lm_eval', lm_eval.__version__)
print('hqq', hqq.__version__, 'bitsandbytes', bitsandbytes.__version__, 'llmcompressor', llmcompressor.__version__, 'fla', fla.__version__)"
} > "$out/device.txt" 2>&1
cat "$out/device.txt"
smk=(python3 -m snakemake --profile profiles/local --configfile config/gpu.yaml --cores "$(nproc)"
     --resources gpu="$slots" --keep-going --rerun-incomplete)
"${smk[@]}" --unlock >/dev/null 2>&1
start=$(date +%s)
timeout --signal=INT --kill-after=30 "$limit" "${smk[@]}" > "$out/snakemake.log" 2>&1
rc=$?
echo "snakemake exit $rc after $(( $(date +%s) - start )) s" | tee "$out/status.txt"
"${smk[@]}" -n --quiet rules >> "$out/status.txt" 2>&1
grep -E "^Error in rule|Exiting because|steps \(|Nothing to be done" "$out/snakemake.log" | tail -20
tar czf "$out/gpu_pipeline.tar.gz" --ignore-failed-read benchmarks logs results/tables results/report.html \
  $(ls -d results/*/*/seed_*/train/metrics.csv results/*/*/seed_*/train/summary.json results/*/*/seed_*/eval/*.json \
         results/*/*/seed_*/metrics/*.json results/*/*/seed_*/passkey.json results/*/*/seed_*/deadheads/*.json 2>/dev/null)
tail -c 3000 "$out/snakemake.log"
