"""A/B of attention kernel versions on one GPU, forward and backward timed separately.

    python perf/kernel_ab.py --out OUT/kernel_ab_h200.csv [--base DIR] [--sweep] [--D 64 128] [--flex-T 4096]

Compares, side by side in one process, for bf16 causal attention at B * T = 16k tokens, H 16:
- "sdpa_flash": torch SDPA forced to its FlashAttention-2 backend (`SDPBackend.FLASH_ATTENTION`);
  "sdpa_cudnn" likewise for cuDNN; with --flex-T also "flex", FlexAttention's Triton softmax kernels;
- "ours": the kernels of this checkout (softpick_repro.ops.triton), dQ in both modes (atomic and
  two_pass), for softpick and our own softmax;
- "base" (with --base DIR): another copy of the ops/triton package, e.g. the last commit's, put
  there by `git show` (the device machine has no git history).
With --features SPEC... extra rows of ours run under launch.set_features settings (e.g. tma=off).
With --sweep the block configs of ours are swept first at T 4096 for each D and the fastest is
used for the table. Forward = one attn_forward launch; backward = one attn_backward call on saved
(o, L), both medians of triton.testing.do_bench. Before timing, ours is checked against the base or
SDPA (relative Frobenius error of o, dq, dk, dv; random normal inputs) and a failing check marks the
row. TFLOP/s: forward 2 * B * T^2 * H * D (causal), backward 2.5x that.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import sys
import time
from pathlib import Path

import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from softpick_repro.ops.bench import SDPA_PINNED

# candidates left after the sweeps of perf/KERNELS.md (stops 26 and 30, perf/kernel_ab_sweep*_h200.log);
# Triton's warp specialization of the loop was ruled out too (perf/kernel_ab_ws_sweep_h200.log: no
# 4-warp config compiled, none was faster)
FWD_CONFIGS = {64: [(64, 64, 4, 4), (64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 4, 5), (64, 128, 4, 3), (64, 32, 4, 4),
                    (128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 4)],
               128: [(128, 128, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2), (128, 64, 4, 3),
                     (64, 128, 4, 3), (128, 128, 8, 4)]}
# (BM query rows, BN keys) of dK/dV: the key-major tiles of BN = 128 with short query blocks (32) are the
# shape the Triton tutorial's backward uses; with the atomic dQ a 32-row dQ tile is below one warpgroup's
# wgmma height, so those are measured, not assumed
DKDV_CONFIGS = {64: [(64, 64, 4, 3), (64, 64, 4, 4), (64, 64, 4, 2), (64, 64, 4, 5), (64, 32, 4, 3),
                     (32, 64, 4, 4), (32, 128, 4, 3), (32, 128, 4, 5), (64, 128, 4, 3), (64, 128, 4, 4),
                     (128, 64, 8, 3), (64, 128, 8, 3)],
                128: [(64, 128, 8, 3), (64, 64, 8, 3), (32, 128, 8, 3), (64, 128, 8, 2), (64, 64, 4, 3),
                      (32, 128, 4, 3), (64, 128, 8, 4)]}
DQ_CONFIGS = {64: [(64, 64, 4, 3), (64, 32, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (128, 32, 4, 5),
                   (128, 64, 4, 3)],
              128: [(64, 32, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3)]}


def bench(fn) -> float:
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def inputs(B, T, H, D, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(B, T, H, D, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(4)]


def rel(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


class Kernels:
    """One ops/triton package: forward and backward launchers with settable blocks."""

    def __init__(self, mod_name: str):
        self.launch = importlib.import_module(f"{mod_name}.launch")
        # the package's own settings, restored before each row without a spec of its own
        self.default_features = dict(getattr(self.launch, "_features", {}))

    def set_blocks(self, D, **blocks):
        self.launch.set_gpu_blocks(D, **blocks)

    def set_features(self, spec: str):
        """spec 'tma=on,tma_reduce=0' etc. (launch.set_features); '' restores the package's defaults."""
        if not hasattr(self.launch, "set_features"):
            return
        self.launch.set_features(**self.default_features)
        if spec:
            kw = dict(item.split("=") for item in spec.split(","))
            flag = {k: kw[k] == "1" for k in ("tma_reduce",) if k in kw}
            self.launch.set_features(tma=kw.get("tma"), **flag)

    def set_dq(self, mode):
        if hasattr(self.launch, "set_dq_mode"):
            self.launch.set_dq_mode(mode)

    def fwd(self, q, k, v, arm, scale):
        return self.launch.attn_forward(q, k, v, None, self.launch.ARM_CODES[arm], True, scale, 1e-6)

    def bwd(self, do, q, k, v, o, L, arm, scale):
        return self.launch.attn_backward(do, q, k, v, o, L, self.launch.ARM_CODES[arm], True, scale)[:3]


SDPA_BACKENDS = {impl: getattr(SDPBackend, name) for impl, name in SDPA_PINNED.items()}


def sdpa_pair(q, k, v, do, scale, backend=SDPBackend.FLASH_ATTENTION):
    qt, kt, vt = (t.detach().transpose(1, 2).requires_grad_() for t in (q, k, v))

    def fwd():
        with sdpa_kernel(backend), torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)

    with sdpa_kernel(backend):
        o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)
    dot = do.transpose(1, 2)

    def bwd():
        return torch.autograd.grad(o, (qt, kt, vt), dot, retain_graph=True)

    return fwd, bwd, o.transpose(1, 2), [g.transpose(1, 2) for g in bwd()]


def flex_pair(q, k, v, do, scale):
    """FlexAttention (PyTorch's Triton-generated attention, compiled with its default kernel options):
    the softmax reference for what a Triton kernel reaches on this GPU."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    T = q.shape[1]
    mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, T, T, device=q.device)
    attn = torch.compile(flex_attention, dynamic=False)
    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))

    def fwd():
        with torch.no_grad():
            return attn(qt, kt, vt, block_mask=mask, scale=scale)

    o = attn(qt, kt, vt, block_mask=mask, scale=scale)
    dot = do.transpose(1, 2).contiguous()

    def bwd():
        return torch.autograd.grad(o, (qt, kt, vt), dot, retain_graph=True)

    return fwd, bwd, o.transpose(1, 2), [g.transpose(1, 2) for g in bwd()]


def time_ours(K: Kernels, arm, q, k, v, do, scale):
    o, L = K.fwd(q, k, v, arm, scale)
    f = bench(lambda: K.fwd(q, k, v, arm, scale))
    b = bench(lambda: K.bwd(do, q, k, v, o, L, arm, scale))
    return f, b


def tflops(B, T, H, D, ms, mult):
    return mult * 2 * B * T * T * H * D / (ms * 1e-3) / 1e12


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", help="directory holding a copy of the ops/triton package as head_triton/")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--D", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--T", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--features", nargs="+", default=[],
                    help="extra rows of ours in dq mode auto, one per launch.set_features spec, "
                         "e.g. tma=off tma=on,tma_reduce=0")
    ap.add_argument("--dq-modes", nargs="+", default=["auto", "atomic", "two_pass"])
    ap.add_argument("--flex-T", type=int, nargs="*", default=[],
                    help="sequence lengths at which FlexAttention's softmax is timed too (compiles per shape)")
    args = ap.parse_args(argv)
    ours = Kernels("softpick_repro.ops.triton")
    base = None
    if args.base:
        sys.path.insert(0, args.base)
        base = Kernels("head_triton")
    dev = torch.cuda.get_device_name()
    rows, best = [], {}
    t0 = time.time()
    for D in args.D:
        scale = 1 / math.sqrt(D)
        if args.sweep:
            T = 4096
            B = max(1, args.tokens // T)
            q, k, v, do = inputs(B, T, args.H, D)
            ours.set_dq("atomic")
            cfgs = {}
            for name, cands in (("fwd", FWD_CONFIGS[D]), ("dkdv_atomic", DKDV_CONFIGS[D]),
                                ("dkdv", DKDV_CONFIGS[D]), ("dq", DQ_CONFIGS[D])):
                ours.set_dq("two_pass" if name in ("dkdv", "dq") else "atomic")
                trials = []
                for cfg in cands:
                    ours.set_blocks(D, **{name: cfg})
                    try:
                        o, L = ours.fwd(q, k, v, "softpick", scale)
                        ms = bench(lambda: ours.fwd(q, k, v, "softpick", scale)) if name == "fwd" else \
                            bench(lambda: ours.bwd(do, q, k, v, o, L, "softpick", scale))
                    except Exception as exc:  # out of shared memory / registers for this tile
                        print(f"D{D} {name} {cfg}: {type(exc).__name__}: {str(exc)[:80]}", flush=True)
                        continue
                    trials.append((ms, cfg))
                    print(f"D{D} {name} {cfg}: {ms:.3f} ms", flush=True)
                ms, cfg = min(trials)
                ours.set_blocks(D, **{name: cfg})
                cfgs[name] = list(cfg)
            best[D] = cfgs
            print(f"D{D} best {json.dumps(cfgs)} ({time.time() - t0:.0f} s)", flush=True)
        for T in args.T:
            B = max(1, args.tokens // T)
            q, k, v, do = inputs(B, T, args.H, D, seed=T + D)
            for impl, backend in SDPA_BACKENDS.items():
                try:
                    sf, sb, o_, g_ = sdpa_pair(q, k, v, do, scale, backend)
                    f, b = bench(sf), bench(sb)
                except RuntimeError as exc:  # backend unavailable for this shape / build
                    print(f"{impl} D{D} T{T}: {str(exc)[:100]}", flush=True)
                    continue
                if impl == "sdpa_flash":
                    so, sg = o_, g_
                    err = ""
                else:
                    err = f"{max(rel(a, r) for a, r in zip([o_, *g_], [so, *sg])):.2e} vs flash"
                rows.append(dict(impl=impl, arm="softmax", dq="-", D=D, T=T, B=B, fwd_ms=f, bwd_ms=b, err=err))
            if T in args.flex_T:
                sf, sb, o_, g_ = flex_pair(q, k, v, do, scale)
                err = f"{max(rel(a, r) for a, r in zip([o_, *g_], [so, *sg])):.2e} vs flash"
                rows.append(dict(impl="flex", arm="softmax", dq="-", D=D, T=T, B=B, fwd_ms=bench(sf),
                                 bwd_ms=bench(sb), err=err))
            versions = [("ours", ours, m, "") for m in args.dq_modes]
            versions += [(f"ours[{spec}]", ours, "auto", spec) for spec in args.features]
            if base is not None:
                versions.append(("base", base, "two_pass", ""))
            for arm in ("softpick", "softmax"):
                ref = None
                if base is not None:
                    o, L = base.fwd(q, k, v, arm, scale)
                    ref = [o, *base.bwd(do, q, k, v, o, L, arm, scale)]
                elif arm == "softmax":
                    ref = [so, *sg]
                for name, K, mode, spec in versions:
                    K.set_features(spec)
                    K.set_dq(mode)
                    o, L = K.fwd(q, k, v, arm, scale)
                    got = [o, *K.bwd(do, q, k, v, o, L, arm, scale)]
                    err = max(rel(a, r) for a, r in zip(got, ref)) if ref is not None else float("nan")
                    f, b = time_ours(K, arm, q, k, v, do, scale)
                    rows.append(dict(impl=name, arm=arm, dq=mode, D=D, T=T, B=B, fwd_ms=f, bwd_ms=b,
                                     err=f"{err:.2e}" + (" FAIL" if err > 2e-2 else "")))
            print(f"D{D} T{T} done ({time.time() - t0:.0f} s)", flush=True)
    for r in rows:
        fb = r["fwd_ms"] + r["bwd_ms"]
        r.update(device=dev, H=args.H, fwd_tflops=tflops(r["B"], r["T"], args.H, r["D"], r["fwd_ms"], 1.0),
                 bwd_tflops=tflops(r["B"], r["T"], args.H, r["D"], r["bwd_ms"], 2.5),
                 fwdbwd_tflops=tflops(r["B"], r["T"], args.H, r["D"], fb, 3.5),
                 torch=torch.__version__, triton=triton.__version__,
                 blocks=json.dumps(best.get(r["D"], {})) if r["impl"].startswith("ours") else "",
                 date=time.strftime("%Y-%m-%d"))
        sd = next(x for x in rows if x["impl"] == "sdpa_flash" and x["D"] == r["D"] and x["T"] == r["T"])
        r["fwdbwd_vs_sdpa"] = (sd["fwd_ms"] + sd["bwd_ms"]) / fb
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{'impl':24} {'arm':8} {'dq':8} {'D':>4} {'T':>5} {'fwd TF':>7} {'bwd TF':>7} {'f+b TF':>7} "
          f"{'vs sdpa':>7}  err")
    for r in rows:
        print(f"{r['impl']:24} {r['arm']:8} {r['dq']:8} {r['D']:4} {r['T']:5} {r['fwd_tflops']:7.0f} "
              f"{r['bwd_tflops']:7.0f} {r['fwdbwd_tflops']:7.0f} {r['fwdbwd_vs_sdpa']:7.2f}  {r['err']}")
    if best:
        print("best blocks:", json.dumps(best))
        Path(args.out).with_name("best_blocks.json").write_text(json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
