"""Triton attention vs the independent float64 implementation: outputs and dq/dk/dv.

Not collected by plain pytest (the name lacks `test_`): tests/test_triton_kernels.py runs this
file in a subprocess, on CPU with TRITON_INTERPRET=1 in the environment (it must be set before
Python starts: Triton reads it when transformers/triton are first imported), and on CUDA without it
when a GPU is present. By hand: `TRITON_INTERPRET=1 python -m pytest -q tests/triton_kernel_cases.py`.

The cases cover each property once rather than their cartesian product (the interpreter is slow):
odd lengths, GQA, decoding (Tq < Tk), non-causal, all-negative rows, huge logits, exact-zero
scores (the sign(0) = 0 convention), head dims 32/64/96/128, every arm, fp32 and fp16 (bf16 only
on GPU: the interpreter's bf16 matmul is wrong).

Error measure: ||x - ref|| / ||ref|| (Frobenius). Huge logits (|s| ~ 3e3) get looser gradient
bounds, for two reasons every flash-style backward shares: the true dq/dk are ~0 (one-hot rows) and
what remains is cancellation in dP - rowsum(dO * O), bounded by TOL_HUGE_ABS times the gradient's
natural scale; and the stored L = m + log(l) rounded in fp32 at |m| ~ 4e3 carries a ~3e-4 relative
error into the recomputed weights (TOL_HUGE_REL). The forward output stays at the tight bound.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from float64_reference import attention_f64, attention_f64_dense  # noqa: E402

from softpick_repro.ops.triton import triton_attention  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET or not torch.cuda.is_available() else "cuda"
if DEVICE == "cpu" and not INTERPRET:
    pytest.skip("needs TRITON_INTERPRET=1 (set before Python starts) or a CUDA GPU",
                allow_module_level=True)

# Relative Frobenius tolerances (measured errors are ~10x below: fp32 1e-7..4e-6, fp16 3e-4..6e-4).
TOL = {
    torch.float32: {"out": 2e-5, "grad": 1e-4},
    torch.float16: {"out": 3e-3, "grad": 5e-3},
    torch.bfloat16: {"out": 2e-2, "grad": 3e-2},
}
# Huge-logit gradient bounds: absolute floor in units of scale * rms(k or q) * rms(v) * rms(dO) * D,
# and the relative bound.
TOL_HUGE_ABS = 1e-5
TOL_HUGE_REL = 1e-3


def _inputs(B, Tq, Tk, HQ, HKV, D, dtype, seed, qk_mult=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, HQ, D, generator=g) * qk_mult
    k = torch.randn(B, Tk, HKV, D, generator=g) * qk_mult
    v = torch.randn(B, Tk, HKV, D, generator=g)
    do = torch.randn(B, Tq, HQ, D, generator=g)
    return q, k, v, do


LONG_ELEMENTS = 1 << 20  # Tq * Tk above which the whole-matrix float64 reference is used


def _run(q, k, v, do, arm, dtype, causal=True, params=None, huge=False, zero_keys=()):
    """Compare with attention_f64; `zero_keys`: key rows whose dk must be exactly 0 (see below)."""
    params = params or {}
    dev = [t.to(DEVICE, dtype).requires_grad_() for t in (q, k, v)]
    dev_params = {n: p.to(DEVICE).requires_grad_() for n, p in params.items()}
    o = triton_attention(*dev, arm, causal=causal, **dev_params)
    assert o.shape == q.shape and o.dtype == dtype
    o.backward(do.to(DEVICE, dtype))
    # the reference sees the same rounded inputs the kernel saw; long inputs take the
    # whole-matrix float64 version on the kernel's device (the row loop would take minutes)
    long = q.shape[1] * k.shape[1] > LONG_ELEMENTS
    ref_dev = DEVICE if long else "cpu"
    ref_in = [t.detach().to(ref_dev).double().requires_grad_() for t in dev]
    ref_params = {n: p.detach().to(ref_dev).double().requires_grad_() for n, p in dev_params.items()}
    reference = attention_f64_dense if long else attention_f64
    ref_o, _ = reference(*ref_in, arm, causal=causal, **ref_params)
    ref_o.backward(do.to(ref_dev, dtype).double())

    tol = TOL[dtype]
    D = q.shape[-1]
    scale = 1 / math.sqrt(D)

    def rms(t):
        return t.double().pow(2).mean().sqrt().item()

    def check(name, got, ref, rtol, floor=0.0):
        got = got.detach().cpu().double()
        ref = ref.detach().cpu()
        assert torch.isfinite(got).all(), f"{arm} {name}: non-finite values"
        err = (got - ref).norm().item()
        bound = rtol * ref.norm().item() + floor * math.sqrt(ref.numel())
        assert err <= bound, (f"{arm} {name} ({dtype}): ||err|| {err:.3e} > {bound:.3e} "
                              f"(rel {err / max(ref.norm().item(), 1e-300):.3e})")

    check("out", o, ref_o, tol["out"])
    gscale = scale * rms(do) * rms(v) * D
    floors = {"dq": gscale * rms(k), "dk": gscale * rms(q), "dv": 0.0}
    keep = torch.ones(k.shape[1], dtype=torch.bool)
    keep[list(zero_keys)] = False
    for name, t, r in zip(("dq", "dk", "dv"), dev, ref_in):
        got, ref = t.grad, r.grad
        if name == "dk" and zero_keys:
            # a zero key scores exactly 0 against every query; with step(0) = sign(0) = 0 its dS is
            # 0, so its dk is exactly 0. (The float64 reference computes exp(s - m) - exp(-m) with
            # torch.exp and math.exp, which can differ by one ulp, so it is compared elsewhere.)
            assert (got[:, ~keep] == 0).all(), "dk of zero keys must be exactly 0 (sign(0) = 0)"
            got, ref = got[:, keep], ref[:, keep]
        if huge:
            # 16-bit: O is stored rounded, so rowsum(dO * O) carries the dtype's rounding into
            # the cancellation; the bounds widen to the dtype's gradient tolerance
            rel = max(TOL_HUGE_REL, tol["grad"]) if dtype != torch.float32 else TOL_HUGE_REL
            floor = max(TOL_HUGE_ABS, tol["grad"]) if dtype != torch.float32 else TOL_HUGE_ABS
            check(name, got, ref, rel, floor * floors[name])
        else:
            check(name, got, ref, tol["grad"])
    for n, p in dev_params.items():
        check(f"d{n}", p.grad, ref_params[n].grad, tol["grad"])
    return o


# (arm, B, Tq, Tk, HQ, HKV, D, dtype, causal): one property each, see the module docstring.
CASES = {
    "softpick-odd-len-d32": ("softpick", 1, 37, 37, 2, 2, 32, torch.float32, True),
    "softpick-gqa-fp16-d64": ("softpick", 2, 70, 70, 4, 2, 64, torch.float16, True),
    "softpick-decode-gqa-d128": ("softpick", 1, 5, 43, 4, 1, 128, torch.float32, True),
    "softpick-noncausal-d96": ("softpick", 1, 21, 33, 2, 1, 96, torch.float32, False),
    "relu_softmax-odd-len": ("relu_softmax", 1, 37, 37, 2, 1, 32, torch.float32, True),
    "relu_softmax-fp16-decode": ("relu_softmax", 1, 9, 40, 2, 2, 64, torch.float16, True),
    "rectified-odd-len": ("rectified", 1, 37, 37, 2, 1, 32, torch.float32, True),
    "rectified-fp16-gqa": ("rectified", 1, 33, 33, 4, 2, 32, torch.float16, True),
    "softmax-gqa": ("softmax", 1, 37, 37, 4, 2, 32, torch.float32, True),
    "softmax-decode-fp16": ("softmax", 1, 6, 29, 2, 1, 64, torch.float16, True),
    "softmax_plus_one": ("softmax_plus_one", 1, 37, 37, 2, 1, 32, torch.float32, True),
}
if DEVICE == "cuda":  # compiled kernels (bf16 works); sizes cross the GPU block edges (32..128)
    CASES.update({
        "softpick-bf16-gqa": ("softpick", 1, 200, 200, 2, 1, 64, torch.bfloat16, True),
        "softpick-bf16-d128-decode": ("softpick", 1, 40, 300, 2, 2, 128, torch.bfloat16, True),
        "relu_softmax-bf16": ("relu_softmax", 1, 150, 150, 2, 2, 64, torch.bfloat16, True),
        "rectified-bf16-gqa": ("rectified", 1, 160, 160, 2, 1, 64, torch.bfloat16, True),
        "softmax-bf16-gqa": ("softmax", 1, 200, 200, 2, 1, 64, torch.bfloat16, True),
        "softmax_plus_one-bf16": ("softmax_plus_one", 1, 160, 160, 2, 2, 64, torch.bfloat16, True),
    })
    # The GPU issue's grid: every CPU case again in bf16 and fp16, plus long sequences
    # (T = 4096, 8192) for each kernel arm in both 16-bit types.
    _LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}
    for _name, _case in list(CASES.items()):
        for _tag, _dt in _LOW.items():
            if _case[7] != _dt:
                CASES[f"{_name}@{_tag}"] = _case[:7] + (_dt,) + _case[8:]
    for _T in (4096, 8192):
        for _arm in ("softpick", "relu_softmax", "rectified", "softmax", "softmax_plus_one"):
            for _tag, _dt in _LOW.items():
                CASES[f"{_arm}-T{_T}-{_tag}"] = (_arm, 1, _T, _T, 1, 1, 64, _dt, True)

# dtypes of the special-input tests below: fp32 under the interpreter, all three on GPU
SPECIAL_DTYPES = [torch.float32] + ([torch.float16, torch.bfloat16] if DEVICE == "cuda" else [])


@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64(case):
    arm, B, Tq, Tk, HQ, HKV, D, dtype, causal = CASES[case]
    q, k, v, do = _inputs(B, Tq, Tk, HQ, HKV, D, dtype, seed=list(CASES).index(case))
    _run(q, k, v, do, arm, dtype, causal=causal)


@pytest.mark.parametrize("dtype", SPECIAL_DTYPES)
def test_scalable_softpick_decoding_and_head_scale_grad(dtype):
    # decoding puts queries at positions Tk - Tq + i: a wrong offset changes log(pos + 2)
    q, k, v, do = _inputs(1, 7, 40, 2, 1, 32, dtype, seed=3)
    _run(q, k, v, do, "scalable_softpick", dtype,
         params={"head_scale": torch.tensor([0.3, 1.7])})


@pytest.mark.parametrize("dtype", SPECIAL_DTYPES)
def test_gpt_oss_sink_with_sink_grad(dtype):
    # on GPU, bf16 takes fla's parallel_attn with sink_bias, fp32 our kernel
    q, k, v, do = _inputs(1, 37, 37, 2, 1, 32, dtype, seed=4)
    _run(q, k, v, do, "gpt_oss_sink", dtype, params={"sink_logits": torch.tensor([-1.0, 2.5])})


def test_gated_attention_with_gate_grad():
    q, k, v, do = _inputs(1, 19, 19, 2, 2, 32, torch.float32, seed=5)
    _run(q, k, v, do, "gated_attention", torch.float32, params={"gate": torch.randn(1, 19, 2, 32)})


@pytest.mark.parametrize("dtype", SPECIAL_DTYPES)
@pytest.mark.parametrize("arm", ["softpick", "rectified"])
def test_all_negative_rows(arm, dtype):
    # rows 0..15 score only < 0 (q = -|x|, k = +|x|): softpick/rectified give exactly 0 there
    q, k, v, do = _inputs(1, 35, 35, 2, 1, 32, torch.float32, seed=6)
    k = k.abs()
    q = q.abs()
    q[:, :16] = -q[:, :16]
    o = _run(q, k, v, do, arm, dtype)
    assert (o[:, :16] == 0).all(), f"{arm}: rows with only negative scores must output exactly 0"
    assert (o[:, 16:] != 0).any()


@pytest.mark.parametrize("dtype", SPECIAL_DTYPES)
def test_huge_logits(dtype):
    # scores of magnitude ~3000: the safe form must not overflow, rows become one-hot
    q, k, v, do = _inputs(1, 37, 37, 2, 1, 32, dtype, seed=7, qk_mult=30.0)
    _run(q, k, v, do, "softpick", dtype, huge=True)


@pytest.mark.parametrize("dtype", SPECIAL_DTYPES)
def test_exact_zero_scores_use_sign_zero(dtype):
    # zero query/key vectors make exact-zero scores: step(0) = sign(0) = 0 in both implementations
    q, k, v, do = _inputs(1, 33, 33, 2, 1, 32, torch.float32, seed=8)
    q[:, 3] = 0.0
    q[:, 20, 1] = 0.0
    k[:, 5] = 0.0
    k[:, 17] = 0.0
    _run(q, k, v, do, "softpick", dtype, zero_keys=(5, 17))


@pytest.mark.parametrize("arm", ["softpick", "relu_softmax", "rectified", "softmax", "softmax_plus_one"])
def test_dense_float64_reference_matches_row_loop(arm):
    # the long-sequence yardstick is itself checked against the row-by-row one (values and grads)
    q, k, v, do = _inputs(1, 23, 30, 4, 2, 16, torch.float64, seed=11)
    q[:, 2] = 0.0  # exact-zero scores (sign(0) = 0) and, with k < 0 below, all-negative rows
    k[:, :3] = -k[:, :3].abs()
    grads = []
    for fn in (attention_f64, attention_f64_dense):
        ins = [t.clone().requires_grad_() for t in (q, k, v)]
        o, w = fn(*ins, arm)
        o.backward(do)
        grads.append((o.detach(), w.detach(), *(t.grad for t in ins)))
    for name, a, b in zip(("out", "weights", "dq", "dk", "dv"), *grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"{arm} {name}: {(a - b).abs().max():.3e}"


def test_through_the_dispatch_point():
    from softpick_repro.ops import attention, use_backend

    q, k, v, _ = _inputs(1, 20, 20, 2, 1, 32, torch.float32, seed=9)
    q, k, v = (t.to(DEVICE) for t in (q, k, v))
    with use_backend("triton"):
        o = attention(q, k, v, "softpick")
    ref, _ = attention_f64(q.cpu(), k.cpu(), v.cpu(), "softpick")
    assert (o.cpu().double() - ref).norm() <= TOL[torch.float32]["out"] * ref.norm()


def test_strided_inputs():
    # q, k, v as views into one packed [B, T, 3, H, D] projection: non-contiguous batch/seq strides
    g = torch.Generator().manual_seed(10)
    qkv = torch.randn(2, 21, 3, 2, 32, generator=g)
    do = torch.randn(2, 21, 2, 32, generator=g)
    packed = qkv.to(DEVICE).clone().requires_grad_()
    q, k, v = packed.unbind(2)
    assert not q.is_contiguous()
    o = triton_attention(q, k, v, "softpick")
    o.backward(do.to(DEVICE))
    ref_packed = qkv.double().clone().requires_grad_()
    ref_o, _ = attention_f64(*ref_packed.unbind(2), "softpick")
    ref_o.backward(do.double())
    tol = TOL[torch.float32]
    assert (o.detach().cpu().double() - ref_o).norm() <= tol["out"] * ref_o.norm()
    assert (packed.grad.cpu().double() - ref_packed.grad).norm() <= tol["grad"] * ref_packed.grad.norm()


def test_tma_setting_reaches_the_forward_launcher(monkeypatch):
    """SOFTPICK_REPRO_TMA=on (as the interpreter run of tests/test_triton_kernels.py sets it) makes
    the forward take tensor descriptors, so the cases above ran that path; a layout TMA cannot
    read (a start 2 bytes past alignment) falls back to pointer loads and stays correct."""
    from softpick_repro.ops.triton import launch

    made = []
    real = launch._desc
    monkeypatch.setattr(launch, "_desc", lambda t, rows, bd: made.append(t.shape) or real(t, rows, bd))
    q, k, v, _ = _inputs(1, 24, 24, 2, 2, 32, torch.float32, seed=11)
    q, k, v = (t.to(DEVICE) for t in (q, k, v))
    triton_attention(q, k, v, "softpick")
    expect = launch._features["tma"] == "on" or (DEVICE == "cuda" and launch._hopper(q) and
                                                 launch._features["tma"] == "auto" and q.shape[-1] > 64)
    assert bool(made) == expect, (launch._features, made)
    made.clear()
    shifted = torch.empty(k.numel() + 1, dtype=torch.float16, device=DEVICE)[1:].view(k.shape)
    shifted.copy_(k.half())
    assert shifted.data_ptr() % 16
    o = triton_attention(q.half(), shifted, v.half(), "softpick")
    assert not made, "a misaligned tensor reached a TMA descriptor"
    ref, _ = attention_f64(q.half().cpu(), shifted.cpu(), v.half().cpu(), "softpick")
    assert (o.cpu().double() - ref).norm() <= TOL[torch.float16]["out"] * ref.norm()
