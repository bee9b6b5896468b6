"""Attention ops: every arm against the independent float64 yardstick, plus the softpick
function on hand-computed values, gradchecks, mask handling and the dispatch point.

Errors are measured as ``max|got - ref| / max|ref|`` (relative to the largest reference
entry) plus a tiny absolute floor for references that are exactly zero.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from float64_reference import attention_f64  # noqa: E402

from softpick_repro.ops import (  # noqa: E402
    ARMS, attention, attention_weights, get_backend, set_backend, softpick, use_backend)
from softpick_repro.ops import dispatch, reference  # noqa: E402

# Named tolerances (relative to the largest reference entry).
FP32_OUT = 1e-5     # fp32 outputs and weights vs float64 (measured <= 1.3e-6)
FP32_GRAD = 3e-5    # fp32 dq, dk, dv and arm-parameter grads vs float64 (measured <= 3.5e-6)
# float64 runs agree to rounding (measured <= 5e-15), tight enough to pin the conventions:
# eps added before the shift, or m differentiated, would show up at ~1e-6.
FP64 = 1e-12
BF16 = 3e-2         # bf16 inputs/outputs vs float64 on the same rounded inputs
HAND = 1e-12        # hand-computed softpick values, float64
# Rounding noise allowed on top, as a fraction of a bound on the terms that cancel (see
# `natural_scales`): e.g. with one visible key the softmax dq is exactly 0 in exact
# arithmetic, but w * (dw - D) leaves ~unit-roundoff * |dw| in fp32.
NOISE = {torch.float32: 1e-6, torch.float64: 1e-14, torch.bfloat16: 1e-2}

EPS = 1e-6


def _t(*shape, seed=0):
    """Seeded float64 normal tensor (tests do not depend on the global RNG state)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rel_err(got, ref):
    got, ref = got.double(), ref.double()
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item() \
        if ref.abs().max() > 0 else got.abs().max().item()


def assert_close(got, ref, tol, what, floor=0.0):
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    err = (got.double() - ref.double()).abs().max().item()
    bound = tol * ref.double().abs().max().item() + floor
    assert err <= bound, f"{what}: max error {err:.3e} > {bound:.3e} (rel {rel_err(got, ref):.2e})"


def natural_scales(q, k, v, do, params, scale):
    """Per-entry bounds on each gradient before cancellation (|w| <= 1, |dw| <= D|do||v|)."""
    D, Tk = q.shape[-1], k.shape[1]
    mq, mk, mv, mdo = (t.abs().max().item() for t in (q, k, v, do))
    scale = 1 / math.sqrt(D) if scale is None else scale
    a = scale * (params["head_scale"].abs().max().item() * math.log(Tk + 1)
                 if "head_scale" in params else 1.0)
    dw = D * mdo * mv
    return {"o": mv, "q": a * dw * mk, "k": a * dw * mq, "v": mdo,
            "head_scale": scale * math.log(Tk + 1) * dw * mq * mk * D, "sink_logits": dw,
            "gate": mdo * mv}


def assert_grads(grads, ref, tol, what, dtype, nat):
    for name, g in ref.items():
        assert grads[name].dtype == dtype, f"{what} d{name}: dtype {grads[name].dtype}"
        assert_close(grads[name], g, tol, f"{what} d{name}", NOISE[dtype] * nat[name])


def make_inputs(arm, B, Tq, Tk, Hq, Hkv, D, seed=0, spread=1.5, regime="random"):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    if regime == "random":
        q, k = randn(B, Tq, Hq, D) * spread, randn(B, Tk, Hkv, D) * spread
    elif regime == "all_negative":  # q >= 0, k <= 0: every score is negative
        q, k = randn(B, Tq, Hq, D).abs() * spread, -randn(B, Tk, Hkv, D).abs() * spread
    elif regime == "all_positive":
        q, k = randn(B, Tq, Hq, D).abs() + 0.1, randn(B, Tk, Hkv, D).abs() + 0.1
    elif regime == "huge":  # integer entries: scores (scale 1) are exact integers up to ~1e4
        q = torch.randint(-30, 31, (B, Tq, Hq, D), generator=g).float()
        k = torch.randint(-30, 31, (B, Tk, Hkv, D), generator=g).float()
    elif regime == "zero_q":  # every score exactly 0 (the kink of |exp(x) - 1|)
        q, k = torch.zeros(B, Tq, Hq, D), randn(B, Tk, Hkv, D)
    elif regime == "zero_keys":  # every third key scores exactly 0, the others do not
        q, k = randn(B, Tq, Hq, D) * spread, randn(B, Tk, Hkv, D) * spread
        k[:, ::3] = 0.0
    else:
        raise ValueError(regime)
    v = randn(B, Tk, Hkv, D)
    params = {}
    if arm == "scalable_softpick":
        params["head_scale"] = randn(Hq) * 0.5 + 0.3
    if arm == "gpt_oss_sink":
        params["sink_logits"] = randn(Hq)
    if arm == "gated_attention":
        params["gate"] = randn(B, Tq, Hq, D)
    return q, k, v, params


def run(fn, q, k, v, params, do, dtype, **kw):
    """Forward + backward of sum(o * do); returns (o, {name: grad}) in float64."""
    ins = {"q": q, "k": k, "v": v, **params}
    leaves = {n: t.detach().to(dtype).requires_grad_(True) for n, t in ins.items()}
    out = fn(leaves["q"], leaves["k"], leaves["v"], **kw,
             **{n: leaves[n] for n in params})
    o = out[0] if isinstance(out, tuple) else out
    (o.double() * do).sum().backward()
    # a leaf the loss does not reach (e.g. q when every weight is 0) has gradient 0
    return o.detach(), {n: torch.zeros_like(t) if t.grad is None else t.grad
                        for n, t in leaves.items()}


def ref_run(arm, q, k, v, params, do, **kw):
    return run(lambda q, k, v, **p: attention_f64(q, k, v, arm, **p), q, k, v, params, do,
               torch.float64, **kw)


def prod_run(arm, q, k, v, params, do, dtype, **kw):
    return run(lambda q, k, v, **p: attention(q, k, v, arm, **p), q, k, v, params, do,
               dtype, **kw)


CONFIGS = {
    "gqa_T17_d32": dict(B=2, Tq=17, Tk=17, Hq=4, Hkv=2, D=32),
    "T1_d64": dict(B=2, Tq=1, Tk=1, Hq=2, Hkv=1, D=64),
    "T63_d128": dict(B=1, Tq=63, Tk=63, Hq=2, Hkv=2, D=128),
    "T65_d64": dict(B=1, Tq=65, Tk=65, Hq=2, Hkv=2, D=64),
    "T200_gqa2_d32": dict(B=1, Tq=200, Tk=200, Hq=2, Hkv=1, D=32),
    "decode_Tq3_Tk40": dict(B=2, Tq=3, Tk=40, Hq=4, Hkv=2, D=32),
    "decode_Tq1_Tk33": dict(B=1, Tq=1, Tk=33, Hq=2, Hkv=1, D=64),
    "noncausal_9x13": dict(B=1, Tq=9, Tk=13, Hq=2, Hkv=1, D=32, causal=False),
}


def check_against_f64(arm, cfg, regime="random", scale=None, seed=0):
    cfg = dict(cfg)
    causal = cfg.pop("causal", True)
    q, k, v, params = make_inputs(arm, **cfg, seed=seed, regime=regime)
    do = torch.randn(cfg["B"], cfg["Tq"], cfg["Hq"], cfg["D"],
                     generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    kw = dict(causal=causal, scale=scale)
    nat = natural_scales(q, k, v, do, params, scale)
    kept = []
    ref_o, ref_g = run(lambda q, k, v, **p: kept.append(attention_f64(q, k, v, arm, **p)) or kept[0],
                       q, k, v, params, do, torch.float64, **kw)
    ref_w = kept[0][1].detach()
    for dtype, out_tol, grad_tol in ((torch.float32, FP32_OUT, FP32_GRAD),
                                     (torch.float64, FP64, FP64)):
        o, grads = prod_run(arm, q, k, v, params, do, dtype, **kw)
        assert o.dtype == dtype
        assert_close(o, ref_o, out_tol, f"{arm} {dtype} output", NOISE[dtype] * nat["o"])
        assert_grads(grads, ref_g, grad_tol, f"{arm} {dtype}", dtype, nat)
        with torch.no_grad():
            w = attention_weights(q.to(dtype), k.to(dtype), v.to(dtype), arm, **kw,
                                  **{n: p.to(dtype) for n, p in params.items()})
        assert w.shape == (cfg["B"], cfg["Hq"], cfg["Tq"], cfg["Tk"])
        assert_close(w, ref_w, out_tol, f"{arm} {dtype} weights", NOISE[dtype])
    return ref_o, ref_w, ref_g


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_arm_matches_float64(arm, config):
    check_against_f64(arm, CONFIGS[config])


REGIME_CFG = dict(B=1, Tq=12, Tk=12, Hq=4, Hkv=2, D=16)


@pytest.mark.parametrize("arm", ARMS)
def test_all_negative_scores(arm):
    ref_o, ref_w, _ = check_against_f64(arm, REGIME_CFG, regime="all_negative")
    if arm in ("softpick", "scalable_softpick", "relu_softmax", "rectified"):
        if arm != "scalable_softpick":  # a negative s_h flips the signs there
            assert (ref_w == 0).all() and (ref_o == 0).all()


@pytest.mark.parametrize("arm", ARMS)
def test_huge_logits(arm):
    """Scores are exact integers up to ~1e4 in magnitude, of both signs, in the same rows."""
    check_against_f64(arm, REGIME_CFG, regime="huge", scale=1.0)
    q, k, v, params = make_inputs(arm, **REGIME_CFG, regime="huge")
    scores = torch.einsum("bihd,bjhd->bhij", q[:, :, :2], k[:, :, :1].expand(-1, -1, 2, -1))
    assert scores.max() > 1000 and scores.min() < -1000


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("regime", ["zero_q", "zero_keys"])
def test_zero_scores_follow_sign0_convention(arm, regime):
    """Scores exactly 0: step(0) = sign(0) = 0, as autograd of relu/abs gives."""
    check_against_f64(arm, REGIME_CFG, regime=regime)
    if arm in ("softpick", "relu_softmax", "scalable_softpick"):
        q, k, v, params = make_inputs(arm, **REGIME_CFG, regime=regime)
        do = _t(1, 12, 4, 16, seed=21)
        o, grads = prod_run(arm, q, k, v, params, do, torch.float32)
        if regime == "zero_q":
            assert (o == 0).all()
            for name in ("q", "k", "v"):
                assert (grads[name] == 0).all(), f"d{name} must be exactly 0 at zero scores"
        else:  # a zero key's dS column is 0, so its dk is exactly 0
            assert (grads["k"][:, ::3] == 0).all() and (grads["k"][:, 1::3] != 0).any()


@pytest.mark.parametrize("arm", ARMS)
def test_weight_gradients_match_float64(arm):
    """Loss on both the output and the returned weights (the dW path of the backward)."""
    cfg = dict(B=2, Tq=9, Tk=11, Hq=4, Hkv=2, D=16)
    q, k, v, params = make_inputs(arm, **cfg, seed=3)
    gen = torch.Generator().manual_seed(4)
    do = torch.randn(2, 9, 4, 16, generator=gen, dtype=torch.float64)
    dw = torch.randn(2, 4, 9, 11, generator=gen, dtype=torch.float64)

    def loss_grads(fn, dtype):
        leaves = {n: t.to(dtype).requires_grad_(True) for n, t in
                  {"q": q, "k": k, "v": v, **params}.items()}
        o, w = fn(leaves["q"], leaves["k"], leaves["v"],
                  **{n: leaves[n] for n in params})
        ((o.double() * do).sum() + (w.double() * dw).sum()).backward()
        return {n: t.grad for n, t in leaves.items()}

    ref = loss_grads(lambda *a, **p: attention_f64(*a, arm, **p), torch.float64)
    got = loss_grads(lambda *a, **p: attention(*a, arm, return_weights=True, **p), torch.float32)
    nat = natural_scales(q, k, v, do, params, None)
    assert_grads(got, ref, FP32_GRAD, f"{arm} (weights path)", torch.float32, nat)


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("shape", [(1, 5, 5, 4, 2, 3), (2, 2, 5, 2, 2, 3)])
def test_gradcheck(arm, shape):
    B, Tq, Tk, Hq, Hkv, D = shape
    q, k, v, params = make_inputs(arm, B, Tq, Tk, Hq, Hkv, D, seed=7)
    names = list(params)
    ins = [t.double().requires_grad_(True) for t in (q, k, v, *params.values())]

    def f(q, k, v, *ps):
        return attention(q, k, v, arm, return_weights=True, **dict(zip(names, ps)))

    assert torch.autograd.gradcheck(f, ins)


def test_block_bookkeeping(monkeypatch):
    """Tiny blocks (many query blocks and (batch, head) chunks) give the same result."""
    cfg = dict(B=3, Tq=11, Tk=14, Hq=4, Hkv=2, D=8)
    for arm in ("softpick", "gpt_oss_sink", "scalable_softpick"):
        q, k, v, params = make_inputs(arm, **cfg, seed=5)
        params = {n: p.double() for n, p in params.items()}
        do = _t(3, 11, 4, 8, seed=22)
        base = prod_run(arm, q, k, v, params, do, torch.float64)
        monkeypatch.setattr(reference, "_BLOCK_ROWS", 4)
        monkeypatch.setattr(reference, "_BLOCK_ELEMS", 40)
        assert len(reference._plan_blocks(6, 2, 11, 14, True)) > 12
        small = prod_run(arm, q, k, v, params, do, torch.float64)
        monkeypatch.undo()
        assert_close(small[0], base[0], 1e-13, f"{arm} output")
        for name in base[1]:
            assert_close(small[1][name], base[1][name], 1e-13, f"{arm} d{name}")


# ---------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------

def test_causal_mask_adds_nothing_to_softpick_denominator():
    """Row 0 of a causal map sees one key. With positive scores m > 0, a masked entry that
    leaked exp(-m) into the |.| sum would shrink its weight far below 1."""
    T, D = 8, 4
    q = torch.full((1, T, 1, D), 0.5)
    k = torch.full((1, T, 1, D), 0.5)  # every score 0.5 (scale 1), m = 0.5
    v = _t(1, T, 1, D, seed=23).float()
    o, w = attention(q, k, v, "softpick", scale=1.0, return_weights=True)
    e = math.exp(-0.5)
    expected = (1 - e) / ((1 - e) + EPS * 1.0)  # eps in the shifted domain (it is eps*exp(m))
    leaky = (1 - e) / ((1 - e) + (T - 1) * e)
    assert abs(w[0, 0, 0, 0].item() - expected) < 1e-6
    assert abs(expected - leaky) > 0.5  # the test distinguishes the bug by a wide margin
    assert (w[0, 0, 0, 1:] == 0).all()
    torch.testing.assert_close(o[0, 0, 0], v[0, 0, 0] * expected)
    # every row i sees i+1 equal positive scores: weights 1/(i+1) up to eps
    for i in range(T):
        ref = (1 - e) / ((i + 1) * (1 - e) + EPS)
        torch.testing.assert_close(w[0, 0, i, : i + 1], torch.full((i + 1,), ref))


@pytest.mark.parametrize("arm", ARMS)
def test_fully_masked_rows_give_zeros(arm):
    """Left padding: batch 1's first 3 keys are masked, so its first 3 queries see nothing."""
    B, T, Hq, Hkv, D = 2, 6, 2, 1, 8
    q, k, v, params = make_inputs(arm, B, T, T, Hq, Hkv, D, seed=11)
    mask = torch.ones(B, 1, 1, T, dtype=torch.bool)
    mask[1, ..., :3] = False
    do = _t(B, T, Hq, D, seed=24)
    o, grads = prod_run(arm, q, k, v, params, do, torch.float32, attn_mask=mask)
    ref_o, ref_g = ref_run(arm, q, k, v, params, do, attn_mask=mask)
    assert (o[1, :3] == 0).all() and (grads["q"][1, :3] == 0).all()
    nat = natural_scales(q, k, v, do, params, None)
    assert_close(o, ref_o, FP32_OUT, f"{arm} output", NOISE[torch.float32] * nat["o"])
    assert_grads(grads, ref_g, FP32_GRAD, arm, torch.float32, nat)
    w = attention_weights(q, k, v, arm, attn_mask=mask, **params)
    assert (w[1, :, :3] == 0).all() and (w[1, ..., :3] == 0).all()


@pytest.mark.parametrize("arm", ["softpick", "gpt_oss_sink", "rectified"])
def test_general_attn_mask_matches_float64(arm):
    B, Tq, Tk, Hq, Hkv, D = 2, 7, 9, 4, 2, 8
    q, k, v, params = make_inputs(arm, B, Tq, Tk, Hq, Hkv, D, seed=12)
    mask = torch.rand(B, Hq, Tq, Tk, generator=torch.Generator().manual_seed(1)) > 0.4
    do = _t(B, Tq, Hq, D, seed=25)
    o, grads = prod_run(arm, q, k, v, params, do, torch.float32, attn_mask=mask)
    ref_o, ref_g = ref_run(arm, q, k, v, params, do, attn_mask=mask)
    nat = natural_scales(q, k, v, do, params, None)
    assert_close(o, ref_o, FP32_OUT, f"{arm} output", NOISE[torch.float32] * nat["o"])
    assert_grads(grads, ref_g, FP32_GRAD, arm, torch.float32, nat)


# ---------------------------------------------------------------------------------------
# relations between arms that follow from their definitions
# ---------------------------------------------------------------------------------------

def test_arm_relations():
    B, T, H, D = 2, 10, 3, 8
    q, k, v = _t(B, T, H, D, seed=1), _t(B, T, H, D, seed=2), _t(B, T, H, D, seed=3)
    soft = attention(q, k, v, "softmax")
    # softmax + 1 is a sink with logit 0; a sink at -1e4 vanishes
    torch.testing.assert_close(attention(q, k, v, "softmax_plus_one"),
                               attention(q, k, v, "gpt_oss_sink", sink_logits=torch.zeros(H)))
    torch.testing.assert_close(attention(q, k, v, "gpt_oss_sink",
                                         sink_logits=torch.full((H,), -1e4)), soft)
    # gated: gate 0 halves softmax attention
    torch.testing.assert_close(attention(q, k, v, "gated_attention", gate=torch.zeros_like(q)),
                               soft / 2)
    # scalable softpick == softpick on queries scaled by s_h * log(pos + 2)
    hs = torch.tensor([0.3, 1.7, -0.4], dtype=torch.float64)
    factor = hs[None, None, :, None] * torch.log(torch.arange(T) + 2.0)[None, :, None, None]
    torch.testing.assert_close(attention(q, k, v, "scalable_softpick", head_scale=hs),
                               attention(q * factor, k, v, "softpick"))
    # decoding: the position of the single query is Tk - 1
    qd = q[:, -1:]
    torch.testing.assert_close(attention(qd, k, v, "scalable_softpick", head_scale=hs),
                               attention(qd * factor[:, -1:], k, v, "softpick"))
    # with every score >= 0, relu_softmax == softpick and rectified == softmax
    qp, kp = q.abs() + 0.1, k.abs() + 0.1
    torch.testing.assert_close(attention(qp, kp, v, "relu_softmax"), attention(qp, kp, v, "softpick"))
    torch.testing.assert_close(attention(qp, kp, v, "rectified"), attention(qp, kp, v, "softmax"))
    # softpick weights: exact zeros where the score is <= 0; rows sum to at most 1
    _, w = attention(q, k, v, "softpick", return_weights=True)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D)
    assert (w[scores <= 0] == 0).all()
    assert (w.sum(-1) <= 1 + 1e-12).all()


def test_bf16_inputs():
    B, T, Hq, Hkv, D = 1, 20, 4, 2, 32
    for arm in ("softmax", "softpick"):
        q, k, v, _ = make_inputs(arm, B, T, T, Hq, Hkv, D, seed=9)
        q, k, v = (t.bfloat16() for t in (q, k, v))
        do = _t(B, T, Hq, D, seed=26)
        o, grads = prod_run(arm, q, k, v, {}, do, torch.bfloat16)
        ref_o, ref_g = ref_run(arm, q, k, v, {}, do)
        assert o.dtype == torch.bfloat16
        nat = natural_scales(q, k, v, do, {}, None)
        assert_close(o, ref_o, BF16, f"{arm} bf16 output")
        assert_grads(grads, ref_g, BF16, f"{arm} bf16", torch.bfloat16, nat)


# ---------------------------------------------------------------------------------------
# the softpick function
# ---------------------------------------------------------------------------------------

def test_softpick_hand_values():
    ln2, ln3 = math.log(2), math.log(3)
    x = torch.tensor([0.0, ln2, -math.inf], dtype=torch.float64)
    # m = ln2: numerators [0, 1 - 1/2, 0], |.| sum 1/2 (the -inf entry adds nothing)
    expected = torch.tensor([0.0, 1 / (1 + 2 * EPS), 0.0], dtype=torch.float64)
    torch.testing.assert_close(softpick(x), expected, atol=HAND, rtol=0)
    # m = ln3: numerators [2/3, 0], |.| sum 2/3 + 1/6 = 5/6
    x = torch.tensor([ln3, -ln2], dtype=torch.float64)
    expected = torch.tensor([(2 / 3) / (5 / 6 + EPS), 0.0], dtype=torch.float64)
    torch.testing.assert_close(softpick(x), expected, atol=HAND, rtol=0)
    # all scores <= 0: m = 0, so eps is absolute: [1/2 * 0, ...] -> zeros
    x = torch.tensor([-ln2, 0.0], dtype=torch.float64)
    torch.testing.assert_close(softpick(x), torch.zeros(2, dtype=torch.float64), atol=0, rtol=0)
    # eps=0 and a custom eps
    x = torch.tensor([ln3, 0.0, -ln2], dtype=torch.float64)
    torch.testing.assert_close(softpick(x, eps=0.0),
                               torch.tensor([0.8, 0.0, 0.0], dtype=torch.float64), atol=HAND, rtol=0)
    torch.testing.assert_close(softpick(x, eps=0.1),
                               torch.tensor([(2 / 3) / (5 / 6 + 0.1), 0, 0], dtype=torch.float64),
                               atol=HAND, rtol=0)


@pytest.mark.parametrize("row", [
    [-math.inf] * 4, [0.0] * 4, [-150.0, -200.0, -101.0, -1e4], [1e4, -1e4, 0.5, -math.inf],
    [-1e4, -1e4, 1e4, 1e4],
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_softpick_extreme_rows_no_nan(row, dtype):
    x = torch.tensor([row, [0.3, -0.2, 1.0, 0.0]], dtype=dtype, requires_grad=True)
    y = softpick(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.backward(_t(*y.shape, seed=27).to(dtype))
    assert torch.isfinite(x.grad).all()
    if all(r <= 0 for r in row):
        assert (y[0] == 0).all() and (x.grad[0] == 0).all()
    if row[:3] == [1e4, -1e4, 0.5]:
        assert abs(y[0, 0].item() - 1.0) < 1e-3 and (y[0, 1:] == 0).all()


def test_softpick_sign0_gradient():
    """x = [0, 1]: the zero entry gets gradient exactly 0 (sign(0) = 0, step(0) = 0).
    The authors' kernel convention sign(0) = -1 would give exp(-1)/S * D here."""
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    softpick(x).backward(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert x.grad[0].item() == 0.0 and x.grad[1].item() != 0.0


def test_softpick_closed_form_matches_autograd():
    """The closed-form backward equals autograd through the safe form with m held constant."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 9, generator=g, dtype=torch.float64) * 2
    x[0, :4] = 0.0
    x[1, 2:] = -math.inf
    x[2] = -math.inf
    up = torch.randn(6, 9, generator=g, dtype=torch.float64)

    xa = x.clone().requires_grad_(True)
    m = xa.detach().amax(-1, keepdim=True).clamp(min=0)
    p = torch.exp(xa - m) - torch.exp(-m)
    p = torch.where(torch.isneginf(xa), torch.zeros_like(p), p)
    naive = torch.relu(p) / (p.abs().sum(-1, keepdim=True) + EPS)
    (naive * up).sum().backward()

    xb = x.clone().requires_grad_(True)
    y = softpick(xb)
    (y * up).sum().backward()
    torch.testing.assert_close(y, naive.detach(), atol=HAND, rtol=0)
    torch.testing.assert_close(xb.grad, xa.grad, atol=HAND, rtol=0)


def test_softpick_dim_and_gradcheck():
    x = _t(4, 5, 3, seed=28)
    torch.testing.assert_close(softpick(x, dim=1), softpick(x.transpose(1, -1)).transpose(1, -1))
    x[0, :2, 0] = -math.inf
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: softpick(t, dim=1), (x,))


# ---------------------------------------------------------------------------------------
# dispatch and argument checks
# ---------------------------------------------------------------------------------------

@pytest.fixture
def fake_triton(monkeypatch):
    calls = []

    def triton_attention(q, k, v, arm, causal, scale, **arm_params):
        calls.append(arm)
        return torch.zeros_like(q)

    mod = SimpleNamespace(TRITON_ARMS=frozenset({"softpick"}), triton_attention=triton_attention)
    monkeypatch.setattr(dispatch, "_load_triton", lambda: (mod, None))
    return calls


def test_dispatch_routes(fake_triton):
    q = torch.randn(1, 4, 2, 8)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert get_backend() == "auto"
    assert dispatch.resolve_backend("softpick", cpu) == "reference"
    assert dispatch.resolve_backend("softpick", cuda) == "triton"
    assert dispatch.resolve_backend("softmax", cuda) == "sdpa"
    assert dispatch.resolve_backend("gated_attention", cuda) == "sdpa"
    assert dispatch.resolve_backend("rectified", cuda) == "reference"
    assert dispatch.resolve_backend("softpick", cuda, return_weights=True) == "reference"
    with use_backend("triton"):
        out = attention(q, q, q, "softpick")
        assert fake_triton == ["softpick"] and (out == 0).all()
        # weights always come from the reference
        _, w = attention(q, q, q, "softpick", return_weights=True)
        assert fake_triton == ["softpick"] and w.shape == (1, 2, 4, 4)
        with pytest.raises(RuntimeError, match="no kernel for arm 'rectified'"):
            attention(q, q, q, "rectified")
        with use_backend("reference"):
            assert dispatch.resolve_backend("softpick", cuda) == "reference"
        assert get_backend() == "triton"
    assert get_backend() == "auto"


def test_dispatch_without_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "_load_triton", lambda: (None, "no module named x"))
    monkeypatch.setattr(dispatch, "_triton_cache", {})
    q = torch.randn(1, 3, 2, 4)
    with pytest.warns(RuntimeWarning, match="Triton attention unavailable"):
        assert dispatch.resolve_backend("softpick", torch.device("cuda")) == "reference"
    with use_backend("triton"), pytest.raises(RuntimeError, match="'triton' was requested"):
        attention(q, q, q, "softpick")
    with pytest.raises(ValueError, match="unknown attention backend"):
        set_backend("cuda")
    try:
        with use_backend("reference"):
            raise KeyError("boom")
    except KeyError:
        pass
    assert get_backend() == "auto"


def test_backend_choice_traces_without_graph_break(monkeypatch):
    """The first attention call of a process may happen inside torch.compile (a compiled training
    step): choosing the CUDA backend there must not break the graph at the kernel import. On an
    H200 it did, in every layer (10 graphs for the 340M model, perf/KERNELS.md)."""
    pytest.importorskip("triton")
    monkeypatch.setattr(dispatch, "_triton_cache", {})
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, backend="eager")
    def choose(x):
        return x + (1 if dispatch.resolve_backend("softpick", torch.device("cuda")) == "triton" else 2)

    assert choose(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert dispatch._triton_cache["problem"] == ""


@pytest.mark.parametrize("arm", ["softmax", "gated_attention"])
@pytest.mark.parametrize("Tq,Tk", [(9, 9), (3, 9), (1, 9)])
def test_sdpa_path_matches_float64(arm, Tq, Tk):
    """The CUDA fast path for softmax arms, run on CPU: bottom-right causal alignment + GQA."""
    q, k, v, params = make_inputs(arm, 2, Tq, Tk, 4, 2, 8, seed=13)
    do = _t(2, Tq, 4, 8, seed=29)
    o, grads = run(lambda q, k, v, **p: dispatch.sdpa_attention(q, k, v, arm, **p),
                   q, k, v, params, do, torch.float64)
    ref_o, ref_g = ref_run(arm, q, k, v, params, do)
    assert_close(o, ref_o, FP64, "sdpa output")
    assert_grads(grads, ref_g, FP64, "sdpa", torch.float64, natural_scales(q, k, v, do, params, None))


def test_no_grad_forward_matches():
    q, k, v, params = make_inputs("softpick", 1, 30, 30, 2, 1, 16)
    with torch.no_grad():
        a = attention(q, k, v, "softpick")
    b = attention(q.requires_grad_(True), k, v, "softpick")
    torch.testing.assert_close(a, b.detach(), atol=0, rtol=0)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(arm="softmaxx"), ValueError, "unknown attention arm"),
    (dict(q=torch.randn(1, 4, 8)), ValueError, r"layout \[B, T, H, D\]"),
    (dict(k=torch.randn(1, 4, 3, 8), v=torch.randn(1, 4, 3, 8)), ValueError, "multiple of"),
    (dict(arm="scalable_softpick"), TypeError, "needs the parameter 'head_scale'"),
    (dict(arm="gpt_oss_sink", sink_logits=torch.zeros(3)), ValueError, "sink_logits must have shape"),
    (dict(arm="softmax", head_scale=torch.zeros(4)), TypeError, "unexpected parameter"),
    (dict(arm="gated_attention", gate=torch.zeros(1, 4, 4)), ValueError, "gate must have the shape"),
    (dict(q=torch.randn(1, 6, 4, 8)), ValueError, "more queries"),
    (dict(arm="softpick", eps=-1.0), ValueError, "eps must be >= 0"),
    (dict(attn_mask=torch.ones(1, 4)), TypeError, "bool tensor"),
    (dict(attn_mask=torch.ones(3, 4, dtype=torch.bool)), ValueError, "does not broadcast"),
])
def test_bad_arguments(kwargs, exc, match):
    args = dict(q=torch.randn(1, 4, 4, 8), k=torch.randn(1, 4, 2, 8), v=torch.randn(1, 4, 2, 8),
                arm="softpick")
    args.update(kwargs)
    q, k, v, arm = args.pop("q"), args.pop("k"), args.pop("v"), args.pop("arm")
    with pytest.raises(exc, match=match):
        attention(q, k, v, arm, **args)


@pytest.mark.parametrize("arm", ["softpick", "softmax", "gated_attention"])
def test_bf16_autocast_forward_and_backward(arm):
    """GPU training runs under bf16 autocast; the core must not mix bf16 and fp32 matmuls."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 9, 2, 32, requires_grad=True) for _ in range(3))
    params = {"gate": torch.randn(1, 9, 2, 32)} if arm == "gated_attention" else {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q @ torch.eye(32), k, v, arm, **params)
    out.float().sum().backward()
    ref = attention(q.detach(), k.detach(), v.detach(), arm, **params)
    assert torch.isfinite(q.grad).all() and torch.isfinite(v.grad).all()
    assert torch.allclose(out.float(), ref, atol=3e-2)
