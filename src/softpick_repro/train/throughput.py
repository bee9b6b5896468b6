"""Training-step throughput and MFU of a preset, per arm (the GPU issue's training benchmark).

    python -m softpick_repro.train.throughput --preset 340m --arms softmax softpick \
        --seq-len 4096 --micro-batch 4 --steps 10 [--compile on] [--accumulation 2] --out perf/train_h200.csv

MFU is reported two ways (SOFTPICK.md section 4): 6 * N * tokens / time / peak, with N the
parameters without the input embedding table (the lm_head counts: it is a matmul), and the
same plus attention FLOPs, 12 * L * T * d per token for forward+backward, halved because causal.
Random token ids: this measures the step, not the data loader.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from softpick_repro.io import bench_environment

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16, SXM


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def measure(preset: str, arm: str, *, seq_len: int, micro_batch: int, steps: int, warmup: int,
            compile_model: bool, device: torch.device, vocab_size: int = 32000,
            activation_checkpointing: bool = False, compile_mode: str | None = None,
            accumulation: int = 1) -> dict:
    """One row: `steps` timed optimizer steps of `accumulation` micro-batches each, as the trainer
    runs them (each micro-batch loss divided by `accumulation`, one clip and AdamW step)."""
    from ..model import SoftpickForCausalLM, build_config, count_parameters

    torch.manual_seed(0)
    config = build_config(preset, arm, vocab_size)
    model = SoftpickForCausalLM(config).to(device)
    if activation_checkpointing:  # as the trainer does it (train.activation_checkpointing)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-15,
                            weight_decay=0.1, fused=device.type == "cuda")
    step_fn = torch.compile(model, mode=compile_mode) if compile_model else model
    ids = torch.randint(0, vocab_size, (micro_batch, seq_len), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    losses = []

    def one_step(sync: bool):
        loss_sum = 0.0
        for _ in range(accumulation):
            with autocast:
                loss = step_fn(input_ids=ids, labels=ids).loss
            (loss / accumulation).backward()
            loss_sum = loss_sum + loss.detach()
        loss = loss_sum / accumulation
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if sync:  # as the trainer: its loss, grad norm and skip decision are read every step
            float(losses[-1])

    def timed(sync: bool) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            one_step(sync)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        one_step(True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(sync=True)
    # the same steps without the per-step host sync: the GPU time the host's waits leave idle
    seconds_nosync = timed(sync=False) if device.type == "cuda" else float("nan")
    losses = [float(x) for x in losses]
    tokens = steps * accumulation * micro_batch * seq_len
    n_params = count_parameters(config, embeddings=False)
    layers, width = config.num_hidden_layers, config.num_attention_heads * config.head_dim
    flops_dense = 6 * n_params * tokens
    flops_attn = 6 * layers * seq_len * width * tokens  # 12*L*T*d per token, halved (causal)
    peak = peak_tflops(device)
    row = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": preset, "arm": arm, "compile": compile_model,
        "compile_mode": (compile_mode or "default") if compile_model else "",
        "activation_checkpointing": activation_checkpointing, "seq_len": seq_len,
        "micro_batch": micro_batch, "accumulation": accumulation,
        "tokens_per_step": accumulation * micro_batch * seq_len, "steps": steps, "params_no_embedding": n_params,
        "tokens_per_s": tokens / seconds,
        "tokens_per_s_no_step_sync": tokens / seconds_nosync,
        "tflops_6n": flops_dense / seconds / 1e12,
        "tflops_6n_attn": (flops_dense + flops_attn) / seconds / 1e12,
        "mfu_6n": (flops_dense / seconds / 1e12 / peak) if peak else float("nan"),
        "mfu_6n_attn": ((flops_dense + flops_attn) / seconds / 1e12 / peak) if peak else float("nan"),
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "first_loss": losses[0], "last_loss": losses[-1],
        # Inductor's per-kernel block search (TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1)
        "coordinate_descent_tuning": _coordinate_descent_tuning(),
        **bench_environment(),
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _coordinate_descent_tuning() -> bool:
    try:
        from torch._inductor import config as inductor_config
    except ImportError:
        return False
    return bool(inductor_config.coordinate_descent_tuning)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="340m")
    parser.add_argument("--arms", nargs="+", default=["softmax", "softpick"])
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--accumulation", type=int, default=1,
                        help="micro-batches per optimizer step (config/paper.yaml: micro-batch 8 x 2 on 8 GPUs)")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="off")
    parser.add_argument("--compile-mode", choices=["default", "max-autotune-no-cudagraphs", "max-autotune",
                                                   "reduce-overhead"], default="default",
                        help="torch.compile's mode (with --compile on/both)")
    parser.add_argument("--activation-checkpointing", choices=["off", "on", "both"], default="off")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.accumulation < 1 or args.steps < 1 or args.warmup < 0:
        parser.error(f"--accumulation and --steps must be >= 1 and --warmup >= 0 (got {args.accumulation}, "
                     f"{args.steps}, {args.warmup})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    choices = {"off": [False], "on": [True], "both": [False, True]}
    cells = [(c, a, mb, arm) for c in choices[args.compile] for a in choices[args.activation_checkpointing]
             for mb in args.micro_batch for arm in args.arms]
    for compile_model, recompute, micro_batch, arm in cells:
        cell = {"preset": args.preset, "arm": arm, "compile": compile_model,
                "activation_checkpointing": recompute, "micro_batch": micro_batch}
        try:
            row = measure(args.preset, arm, seq_len=args.seq_len, micro_batch=micro_batch,
                          steps=args.steps, warmup=args.warmup, compile_model=compile_model,
                          device=device, activation_checkpointing=recompute,
                          compile_mode=None if args.compile_mode == "default" else args.compile_mode,
                          accumulation=args.accumulation)
            rows.append({**row, "status": "ok"})
            print(f"{arm:>18} compile={compile_model!s:5} recompute={recompute!s:5} mb={micro_batch}x{args.accumulation:<3}"
                  f"{row['tokens_per_s']:>10,.0f} tok/s ({row['tokens_per_s_no_step_sync']:,.0f} without "
                  f"the per-step sync)  MFU(6N) {row['mfu_6n']:.3f}  "
                  f"MFU(6N+attn) {row['mfu_6n_attn']:.3f}  mem {row['peak_mem_gb']:.1f} GB  "
                  f"loss {row['first_loss']:.3f}->{row['last_loss']:.3f}", flush=True)
        except Exception as exc:  # keep measuring the other cells; the CSV says what failed (e.g. OOM)
            print(f"{cell}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            rows.append({**cell, "status": f"error: {type(exc).__name__}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if args.out:  # after every cell: a crash later keeps what was measured
            _write(rows, args.out)
    sys.stdout.flush()


def _write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as handle:
        fields = list(dict.fromkeys(k for row in rows for k in row))  # error rows have fewer keys
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


if __name__ == "__main__":
    main()
