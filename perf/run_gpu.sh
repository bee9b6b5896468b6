#!/usr/bin/env bash
# GPU validation and performance (the GPU issue), reproducible on any CUDA machine:
#
#   bash perf/run_gpu.sh OUT_DIR [tests] [bench] [tune] [throughput] [shortrun]
#
# tests:      every Triton kernel (values and gradients) against the float64 implementation:
#             the CPU grid again in bf16 and fp16, plus T = 4096 and 8192 (tests/triton_kernel_cases.py)
# bench:      kernel speed side by side (ours, torch SDPA, fla parallel_attn), B*T = 16k, H 16, D 64
# throughput: 340M training step, softmax vs softpick, tokens/s and both MFUs, compile off and on;
#             then compiled at the paper config's batch (micro-batch 8 x accumulation 2)
# shortrun:   a 250-step 340M run per arm on the embedded corpus (needs results/data/tokens from
#             `snakemake results/data/tokens/manifest.json`); its loss must fall
#
# tune:       block-size sweep for our kernels (GPU_BLOCKS in ops/triton/launch.py), then the bench
#
# No section named: tests bench throughput shortrun. Every CSV carries device, driver, library versions and date.
set -uo pipefail
out=${1:?usage: perf/run_gpu.sh OUT_DIR [tests] [bench] [tune] [throughput] [shortrun]}
shift
sections=${*:-tests bench throughput shortrun}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/device.txt"
# result files are named after the device they ran on: h100, h200, a100, ... (first model token)
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | grep -oE '[a-z][0-9]+' | head -1)
dev=${dev:-gpu}
status=0

for section in $sections; do
  start=$(date +%s)
  case $section in
    tests)
      python3 -m pytest -q -rf -p no:cacheprovider -n 6 tests/triton_kernel_cases.py \
        --junitxml="$out/kernel_tests.xml" || status=1 ;;
    bench)
      python3 -m softpick_repro.ops.bench --device cuda --out "$out/kernel_bench_$dev.csv" || status=1 ;;
    tune)
      # block-size sweep on softpick at T = 8192 (every trial printed), then the bench with the winners
      python3 -m softpick_repro.ops.bench --device cuda --tune --out "$out/kernel_bench_tuned_$dev.csv" || status=1 ;;
    throughput)
      python3 -m softpick_repro.train.throughput --preset 340m --arms softmax softpick \
        --seq-len 4096 --micro-batch 4 --steps 8 --warmup 2 --compile both \
        --out "$out/train_throughput_$dev.csv" || status=1
      # the batch config/paper.yaml trains at: micro-batch 8, two micro-batches per optimizer step
      python3 -m softpick_repro.train.throughput --preset 340m --arms softmax softpick \
        --seq-len 4096 --micro-batch 8 --accumulation 2 --steps 5 --warmup 2 --compile on \
        --out "$out/train_throughput_mb8x2_$dev.csv" || status=1 ;;
    shortrun)
      for arm in softmax softpick; do
        cfg="$out/shortrun_$arm.json"
        printf '{"preset": "340m", "arm": "%s", "seq_len": 2048, "global_batch": 16, "micro_batch": 16,
"steps": 250, "lr": 1e-3, "warmup_steps": 25, "ckpt_every": 10000, "val_every": 100,
"val_batches": 4, "log_every": 25}\n' "$arm" > "$cfg"
        python3 -m softpick_repro.train --config "$cfg" --tokens-dir results/data/tokens \
          --ckpt-dir "/tmp/shortrun_ckpt_$arm" --out-dir "/tmp/shortrun_$arm" --no-progress || status=1
        cp "/tmp/shortrun_$arm/metrics.csv" "$out/shortrun_${arm}_metrics.csv" 2>/dev/null || status=1
        rm -f "$cfg"
      done ;;
    *) echo "unknown section $section" >&2; status=2 ;;
  esac
  echo "== $section: $(( $(date +%s) - start )) s"
done
exit $status
