"""Where a compiled training step's GPU time goes: the top kernels and a split into attention,
matmuls and the rest, per arm (the GPU issue's "where the time goes").

    python perf/profile_step.py --preset 340m --arms softmax softpick --seq-len 4096 --micro-batch 4

The step is the one of softpick_repro.train.throughput (bf16 autocast, fused AdamW, clip, compile
on), profiled over 3 steps after 3 warm-up steps with torch.profiler; times are summed device time,
set against the wall time of 3 unprofiled steps (the gap: launches, host work, graph boundaries).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

ATTN = ("attn", "flash", "fmha", "cudnn", "sdpa")
MATMUL = ("gemm", "cutlass", "nvjet", "sm90_xmma", "cublas", "matmul", "triton_tem")


def kind(name: str) -> str:
    low = name.lower()
    if any(a in low for a in ATTN):
        return "attention"
    if any(m in low for m in MATMUL):
        return "matmul"
    return "other"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="340m")
    ap.add_argument("--arms", nargs="+", default=["softmax", "softpick"])
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    from softpick_repro.model import SoftpickForCausalLM, build_config

    dev = torch.device("cuda")
    for arm in args.arms:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = SoftpickForCausalLM(build_config(args.preset, arm, 32000)).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        step_fn = torch.compile(model)
        ids = torch.randint(0, 32000, (args.micro_batch, args.seq_len), device=dev)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_fn(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) / 3 * 1e3
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
        total = sum(e.self_device_time_total for e in events)
        split = {}
        for e in events:
            split[kind(e.key)] = split.get(kind(e.key), 0.0) + e.self_device_time_total
        print(f"== {arm}: {total / 3 / 1e3:.1f} ms of kernels per step of {wall_ms:.1f} ms wall "
              f"(unprofiled; the GPU idles {1 - total / 3 / 1e3 / wall_ms:.0%}); "
              + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(split.items(), key=lambda kv: -kv[1])))
        for e in sorted(events, key=lambda e: -e.self_device_time_total)[:args.top]:
            print(f"  {e.self_device_time_total / total:6.1%} {e.self_device_time_total / 3 / 1e3:7.2f} ms  "
                  f"{kind(e.key):9} {e.key[:110]}")
        del model, opt, step_fn


if __name__ == "__main__":
    main()
