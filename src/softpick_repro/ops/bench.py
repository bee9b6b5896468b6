"""Attention kernel benchmark: time, TFLOP/s and peak memory per arm and implementation.

    python -m softpick_repro.ops.bench --device cpu|cuda --out results/bench/attention.csv

FLOPs (SOFTPICK.md section 8): forward 4 * B * T^2 * H * D, halved when causal; backward 2.5x the
forward, so forward+backward is 3.5x. Writes the CSV atomically plus `<out>.json` with provenance,
and prints a table.

- cuda (default grid): B * T = 16k tokens, H * D = 1024 (H 16, D 64), bf16, causal, T in
  1k..8k. Implementations: our Triton kernels ("triton"), torch SDPA as torch chooses ("sdpa") and
  forced to one backend ("sdpa_flash": FlashAttention-2, "sdpa_cudnn": cuDNN), and fla's
  parallel_attn ("fla") for the softmax family, and the pure-torch reference where its T x T score
  tensor stays small. Times are medians of triton.testing.do_bench; peak memory is
  torch.cuda.max_memory_allocated above the inputs.
- cpu (default grid): B 4, H 8, D 64, fp32, causal, T in {128, 512}; the pure-torch reference for
  every arm, torch.compile of it for softmax/softpick (T <= --compiled-max-t), and SDPA for softmax.
  Each measurement runs in a fresh process (clean compile state); times are medians of wall-clock
  repeats, peak memory is the most tensor memory torch's CPU allocator held above the inputs
  (profiler memory events). The run ends with the question the CPU grid exists for: how much
  slower softpick (the CPU training path) is than SDPA softmax at B4 T512 H8 D64, forward+backward.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

FIELDS = ["device", "arm", "impl", "dtype", "B", "T", "H", "D", "causal", "fwd_ms", "fwdbwd_ms",
          "fwd_tflops", "fwdbwd_tflops", "peak_fwd_mb", "peak_fwdbwd_mb", "threads", "status"]


@dataclass
class Case:
    arm: str
    impl: str
    B: int
    T: int
    H: int
    D: int
    dtype: str
    causal: bool = True


@dataclass
class Result:
    case: Case
    device: str
    fwd_ms: float = math.nan
    fwdbwd_ms: float = math.nan
    peak_fwd_mb: float = math.nan
    peak_fwdbwd_mb: float = math.nan
    threads: int = 0
    status: str = "ok"
    extra: dict = field(default_factory=dict)

    def row(self) -> dict:
        c = self.case
        fwd_flops = 4 * c.B * c.T ** 2 * c.H * c.D * (0.5 if c.causal else 1.0)

        def tflops(flops, ms):
            return flops / (ms * 1e-3) / 1e12 if ms == ms and ms > 0 else math.nan

        return {"device": self.device, "arm": c.arm, "impl": c.impl, "dtype": c.dtype, "B": c.B, "T": c.T,
                "H": c.H, "D": c.D, "causal": c.causal, "fwd_ms": self.fwd_ms, "fwdbwd_ms": self.fwdbwd_ms,
                "fwd_tflops": tflops(fwd_flops, self.fwd_ms),
                "fwdbwd_tflops": tflops(3.5 * fwd_flops, self.fwdbwd_ms),
                "peak_fwd_mb": self.peak_fwd_mb, "peak_fwdbwd_mb": self.peak_fwdbwd_mb,
                "threads": self.threads, "status": self.status}


# ------------------------------------------------------------------------------------------
# Building the callables
# ------------------------------------------------------------------------------------------

def _inputs(case: Case, device: str):
    dtype = getattr(torch, case.dtype)
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_()

    q, k, v = (rnd(case.B, case.T, case.H, case.D) for _ in range(3))
    params = {}
    if case.arm == "scalable_softpick":
        params["head_scale"] = torch.full((case.H,), 0.3, device=device).requires_grad_()
    elif case.arm == "gpt_oss_sink":
        params["sink_logits"] = (torch.randn(case.H, generator=g) * 0.006).to(device).requires_grad_()
    elif case.arm == "gated_attention":
        params["gate"] = rnd(case.B, case.T, case.H, case.D)
    do = torch.randn(case.B, case.T, case.H, case.D, generator=g).to(device=device, dtype=dtype)
    return q, k, v, params, do


# impl name -> the torch.nn.attention.SDPBackend it forces ("sdpa" alone is torch's own choice:
# cuDNN on an H200, torch 2.11)
SDPA_PINNED = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION",
               "sdpa_efficient": "EFFICIENT_ATTENTION"}


def _attention_fn(case: Case, device: str):
    """(q, k, v, **params) -> o for the case's implementation."""
    scale = 1.0 / math.sqrt(case.D)
    if case.impl in ("reference", "reference_compiled"):
        from .reference import reference_attention

        def ref(q, k, v, **p):
            return reference_attention(q, k, v, case.arm, causal=case.causal, scale=scale, **p)

        return torch.compile(ref) if case.impl == "reference_compiled" else ref
    if case.impl in SDPA_PINNED:  # one SDPA backend forced: the baseline is named, not chosen by torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from .dispatch import sdpa_attention

        def pinned(q, k, v, **p):
            with sdpa_kernel(getattr(SDPBackend, SDPA_PINNED[case.impl])):
                return sdpa_attention(q, k, v, case.arm, causal=case.causal, scale=scale, **p)

        return pinned
    if device == "cuda" and case.arm in ("softmax", "softmax_plus_one", "gpt_oss_sink") \
            and case.impl in ("sdpa", "fla", "triton"):
        from .triton.softmax_family import softmax_attention

        def fam(q, k, v, **p):
            sink = p.get("sink_logits")
            if case.arm == "softmax_plus_one":
                sink = torch.zeros(q.shape[2], device=q.device)
            return softmax_attention(q, k, v, causal=case.causal, scale=scale, sink=sink, impl=case.impl)

        return fam
    if case.impl == "sdpa":  # softmax / gated_attention, any device
        from .dispatch import sdpa_attention

        return lambda q, k, v, **p: sdpa_attention(q, k, v, case.arm, causal=case.causal, scale=scale, **p)
    if case.impl in ("triton", "auto"):
        from .triton import triton_attention

        return lambda q, k, v, **p: triton_attention(q, k, v, case.arm, case.causal, scale, **p)
    raise ValueError(f"no implementation {case.impl!r} for arm {case.arm!r}")


def _steps(case: Case, device: str):
    q, k, v, params, do = _inputs(case, device)
    fn = _attention_fn(case, device)
    leaves = [q, k, v] + [p for p in params.values() if p.requires_grad]

    def fwd():
        with torch.no_grad():
            return fn(q, k, v, **params)

    def fwdbwd():
        o = fn(q, k, v, **params)
        return torch.autograd.grad(o, leaves, do)

    return fwd, fwdbwd


# ------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------

def _measure_cuda(case: Case) -> Result:
    import triton

    res = Result(case, "cuda", threads=torch.get_num_threads())
    fwd, fwdbwd = _steps(case, "cuda")
    for name, step in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        step()  # compile / autotune outside the measured region
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = step()
        torch.cuda.synchronize()
        setattr(res, f"peak_{name}_mb", (torch.cuda.max_memory_allocated() - base) / 2 ** 20)
        del out
        setattr(res, f"{name}_ms", triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median"))
    return res


def _peak_cpu_alloc_mb(step) -> float:
    """Peak bytes held by torch's CPU allocator during one call of `step`, above what was held
    before, from the profiler's memory events (tensor memory only, not Python objects)."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = step()
        del out
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    finally:
        os.unlink(path)
    mem = [e["args"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    if not mem:
        return 0.0
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return (max(m["Total Allocated"] for m in mem) - base) / 2 ** 20


def _time_cpu(step, min_time_s: float = 1.0, max_reps: int = 10) -> float:
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time_s and len(times) < max_reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _measure_cpu_here(case: Case) -> Result:
    res = Result(case, "cpu", threads=torch.get_num_threads())
    fwd, fwdbwd = _steps(case, "cpu")
    for name, step in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        step()  # compile (reference_compiled) outside the measured region
        setattr(res, f"peak_{name}_mb", _peak_cpu_alloc_mb(step))
        setattr(res, f"{name}_ms", _time_cpu(step))
    return res


def _measure_cpu(case: Case, threads: int | None, timeout: int) -> Result:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "softpick_repro.ops.bench", "--one", json.dumps(asdict(case))]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Result(case, "cpu", status=f"timeout after {timeout} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Result(case, "cpu", status=f"error: {tail[:200]}")
    data = json.loads(lines[-1])
    return Result(case, "cpu", **{k: data[k] for k in ("fwd_ms", "fwdbwd_ms", "peak_fwd_mb",
                                                        "peak_fwdbwd_mb", "threads", "status")})


TUNE_CANDIDATES = {
    "fwd": [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 4, 4),
            (64, 128, 4, 3), (128, 64, 4, 4), (128, 128, 8, 2), (64, 64, 4, 4), (128, 64, 8, 4),
            (64, 64, 4, 5), (64, 32, 4, 4), (128, 64, 8, 5)],
    "dkdv": [(32, 128, 4, 3), (64, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 3), (16, 128, 4, 3),
             (64, 128, 4, 2), (32, 128, 8, 3), (64, 128, 8, 2), (32, 128, 4, 4), (32, 128, 4, 5),
             (32, 64, 4, 4), (32, 64, 4, 5), (64, 128, 8, 4), (16, 64, 4, 4)],
    "dkdv_atomic": [(32, 64, 4, 3), (32, 128, 4, 3), (64, 64, 4, 3), (64, 128, 8, 3), (32, 128, 8, 3),
                    (16, 128, 4, 3), (64, 64, 8, 3), (32, 64, 4, 4)],
    "dq": [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 64, 4, 3), (64, 32, 4, 3),
           (128, 32, 8, 3), (128, 64, 8, 2), (64, 64, 4, 4), (128, 32, 4, 5), (64, 64, 4, 5),
           (64, 32, 4, 4), (128, 64, 8, 4)],
}


def tune(case: Case) -> dict:
    """Pick GPU block configs for our kernels on one case: fwd by forward time, dkdv and dq by
    forward+backward time with the other kernels fixed. Prints every trial; returns the winners."""
    import triton

    from .triton.launch import GPU_BLOCKS, _bucket, set_dq_mode, set_gpu_blocks

    fwd, fwdbwd = _steps(case, "cuda")
    for name, cands in TUNE_CANDIDATES.items():
        step = fwd if name == "fwd" else fwdbwd
        # dkdv and dq run in the two-pass mode, dkdv_atomic in the atomic one
        set_dq_mode("two_pass" if name in ("dkdv", "dq") else "atomic")
        best = None
        start = GPU_BLOCKS[_bucket(case.D)][name]
        for cfg in cands:
            set_gpu_blocks(case.D, **{name: cfg})
            try:
                step()
                ms = triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median")
            except Exception as exc:  # e.g. out of shared memory for this tile
                print(f"tune {name} {cfg}: {type(exc).__name__}", flush=True)
                continue
            print(f"tune {name} {cfg}: {ms:.3f} ms", flush=True)
            if best is None or ms < best[1]:
                best = (cfg, ms)
        set_gpu_blocks(case.D, **{name: best[0] if best is not None else start})
    set_dq_mode("auto")
    print("tuned GPU_BLOCKS:", json.dumps(GPU_BLOCKS), flush=True)
    return dict(GPU_BLOCKS)


# ------------------------------------------------------------------------------------------
# Grids and reporting
# ------------------------------------------------------------------------------------------

TRITON_ONLY = ("softpick", "relu_softmax", "rectified", "scalable_softpick")


def cuda_cases(ts, tokens: int, H: int, D: int, dtype: str, ref_budget_gb: float) -> list[Case]:
    cases = []
    for T in ts:
        B = max(1, tokens // T)
        small = B * H * T * T * 4 <= ref_budget_gb * 2 ** 30  # one fp32 T x T score tensor
        for arm in TRITON_ONLY:
            cases.append(Case(arm, "triton", B, T, H, D, dtype))
            if small and arm == "softpick":
                cases.append(Case(arm, "reference", B, T, H, D, dtype))
        for impl in ("sdpa", "sdpa_flash", "sdpa_cudnn", "fla", "triton"):
            cases.append(Case("softmax", impl, B, T, H, D, dtype))
        for arm in ("softmax_plus_one", "gpt_oss_sink"):
            for impl in ("fla", "triton"):
                cases.append(Case(arm, impl, B, T, H, D, dtype))
        cases.append(Case("gated_attention", "auto", B, T, H, D, dtype))
    return cases


def cpu_cases(ts, B: int, H: int, D: int, dtype: str, compiled_max_t: int) -> list[Case]:
    from .reference import ARMS

    cases = []
    for T in ts:
        cases.append(Case("softmax", "sdpa", B, T, H, D, dtype))
        for arm in ARMS:
            cases.append(Case(arm, "reference", B, T, H, D, dtype))
        if T <= compiled_max_t:
            for arm in ("softmax", "softpick"):
                cases.append(Case(arm, "reference_compiled", B, T, H, D, dtype))
    return cases


def _fmt(x, spec):
    return "nan" if isinstance(x, float) and x != x else format(x, spec)


def table(rows: list[dict]) -> str:
    head = (f"{'arm':<18}{'impl':<19}{'B':>3}{'T':>6}{'fwd ms':>10}{'f+b ms':>10}{'fwd TF':>8}"
            f"{'f+b TF':>8}{'mem fwd MB':>11}{'mem f+b MB':>11}  status")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r['arm']:<18}{r['impl']:<19}{r['B']:>3}{r['T']:>6}{_fmt(r['fwd_ms'], '10.3f')}"
                   f"{_fmt(r['fwdbwd_ms'], '10.3f')}{_fmt(r['fwd_tflops'], '8.2f')}"
                   f"{_fmt(r['fwdbwd_tflops'], '8.2f')}{_fmt(r['peak_fwd_mb'], '11.1f')}"
                   f"{_fmt(r['peak_fwdbwd_mb'], '11.1f')}  {r['status']}")
    return "\n".join(out)


def softpick_vs_sdpa(rows: list[dict], B=4, T=512, H=8, D=64) -> str | None:
    """The CPU question: forward+backward time of softpick over SDPA softmax at one shape."""
    pick = {(r["arm"], r["impl"]): r for r in rows if (r["B"], r["T"], r["H"], r["D"]) == (B, T, H, D)}
    sdpa = pick.get(("softmax", "sdpa"))
    if not sdpa or sdpa["fwdbwd_ms"] != sdpa["fwdbwd_ms"]:
        return None
    lines = [f"B{B} T{T} H{H} D{D}, forward+backward, relative to torch SDPA softmax "
             f"({sdpa['fwdbwd_ms']:.2f} ms):"]
    for impl in ("reference", "reference_compiled"):
        r = pick.get(("softpick", impl))
        if r and r["fwdbwd_ms"] == r["fwdbwd_ms"]:
            lines.append(f"  softpick {impl}: {r['fwdbwd_ms']:.2f} ms = {r['fwdbwd_ms'] / sdpa['fwdbwd_ms']:.2f}x")
    r = pick.get(("softmax", "reference"))
    if r and r["fwdbwd_ms"] == r["fwdbwd_ms"]:
        lines.append(f"  softmax reference (same code path as softpick): {r['fwdbwd_ms']:.2f} ms = "
                     f"{r['fwdbwd_ms'] / sdpa['fwdbwd_ms']:.2f}x")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    from softpick_repro.io import atomic_write_text, bench_environment, dump_json, provenance

    env = bench_environment()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS + list(env), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}, **env})
    atomic_write_text(path, buf.getvalue())
    dump_json(provenance(benchmark="softpick_repro.ops.bench", rows=len(rows)), f"{path}.json")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--out", help="CSV path (written atomically, with <out>.json provenance)")
    ap.add_argument("--T", type=_ints, help="sequence lengths, comma-separated")
    ap.add_argument("--B", type=int, default=4, help="cpu: batch size")
    ap.add_argument("--tokens", type=int, default=16384, help="cuda: B * T")
    ap.add_argument("--H", type=int, help="heads (cpu 8, cuda 16)")
    ap.add_argument("--D", type=int, default=64, help="head dim")
    ap.add_argument("--dtype", help="float32 (cpu default) or bfloat16 (cuda default)")
    ap.add_argument("--arms", help="only these arms, comma-separated")
    ap.add_argument("--impls", help="only these implementations, comma-separated")
    ap.add_argument("--compiled-max-t", type=int, default=128,
                    help="cpu: torch.compile the reference only up to this T (at B4 T512 H8 D64 one "
                         "compiled measurement did not finish in 15 min on 2 shared cores); 0 skips")
    ap.add_argument("--threads", type=int, help="torch threads (cpu)")
    ap.add_argument("--timeout", type=int, default=900, help="cpu: seconds per measurement")
    ap.add_argument("--ref-budget-gb", type=float, default=2.0,
                    help="cuda: run the reference only while one fp32 T x T score tensor fits this")
    ap.add_argument("--blocks", help="cuda: JSON {kernel: [BM, BN, warps, stages]} overriding GPU_BLOCKS")
    ap.add_argument("--tune", action="store_true",
                    help="cuda: first pick block sizes on softpick at the largest T, then run the grid")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:  # child process of a cpu run: measure one case, print one JSON line
        case = Case(**json.loads(args.one))
        try:
            res = _measure_cpu_here(case)
        except Exception as exc:  # reported in the CSV rather than aborting the grid
            res = Result(case, "cpu", status=f"error: {type(exc).__name__}: {str(exc)[:150]}")
        print(json.dumps({k: getattr(res, k) for k in ("fwd_ms", "fwdbwd_ms", "peak_fwd_mb",
                                                       "peak_fwdbwd_mb", "threads", "status")}))
        return 0

    if args.device == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda but torch sees no CUDA device")
        if args.blocks:
            from .triton.launch import set_gpu_blocks

            set_gpu_blocks(**json.loads(args.blocks))
        if args.tune:
            T = max(args.T or [8192])
            tune(Case("softpick", "triton", max(1, args.tokens // T), T, args.H or 16, args.D,
                      args.dtype or "bfloat16"))
        cases = cuda_cases(args.T or [1024, 2048, 4096, 8192], args.tokens, args.H or 16, args.D,
                           args.dtype or "bfloat16", args.ref_budget_gb)
    else:
        cases = cpu_cases(args.T or [128, 512], args.B, args.H or 8, args.D, args.dtype or "float32",
                          args.compiled_max_t)
    if args.arms:
        cases = [c for c in cases if c.arm in args.arms.split(",")]
    if args.impls:
        cases = [c for c in cases if c.impl in args.impls.split(",")]

    rows = []
    print(table([]).splitlines()[0], flush=True)
    for case in cases:
        if args.device == "cuda":
            try:
                res = _measure_cuda(case)
            except Exception as exc:  # e.g. fla missing: keep going, report the reason
                res = Result(case, "cuda", status=f"error: {type(exc).__name__}: {str(exc)[:150]}")
                torch.cuda.empty_cache()
        else:
            res = _measure_cpu(case, args.threads, args.timeout)
        rows.append(res.row())
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        if args.out:  # keep partial results if a long grid is interrupted
            write_csv(rows, args.out)
    print()
    print(table(rows))
    if args.device == "cpu":
        answer = softpick_vs_sdpa(rows, B=args.B, T=512, H=args.H or 8, D=args.D)
        if answer:
            print()
            print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
