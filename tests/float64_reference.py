"""Independent float64 attention, written row by row from SOFTPICK.md's definitions.

This is the yardstick for every attention implementation in the repo (the pure-torch
reference in ``softpick_repro.ops.reference`` and the Triton kernels). It shares no code
with them and is built differently on purpose:

- explicit Python loops over batch, query head and query row;
- masked keys are never computed: each row slices out its visible keys (``j <= Tk-Tq+i``
  when causal, and those allowed by ``attn_mask``), so a bug that lets masked scores leak
  into a denominator cannot be reproduced here;
- softmax-like arms use logsumexp; the rectified arms use the safe shift with ``m`` taken
  as a Python float (a constant for autograd, as the conventions require);
- gradients come from torch autograd through these float64 ops, not from closed forms.

Conventions (same as the package): q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D], query head h
uses kv head h // (Hq // Hkv); scale = 1/sqrt(D) by default; eps in the shifted domain
(default 1e-6); step(0) = sign(0) = 0 (autograd of relu/abs at 0); rows with no visible
key give zero output and zero weights. Slow: meant for small test shapes only.
"""
from __future__ import annotations

import math

import torch

EPS = 1e-6


def _shifted(s, m):
    """exp(s - m) - exp(-m), exactly 0 where s == 0: the rounded difference can be one ulp off
    there, which would break the sign(0) = 0 convention (and give zero keys a gradient)."""
    return torch.where(s == 0, s * 0.0, torch.exp(s - m) - math.exp(-m))


def _softpick_row(s, eps):
    m = max(0.0, float(s.detach().max()))
    shifted = _shifted(s, m)
    return torch.relu(shifted) / (shifted.abs().sum() + eps)


def _relu_softmax_row(s, eps):
    m = max(0.0, float(s.detach().max()))
    num = torch.relu(_shifted(s, m))
    return num / (num.sum() + eps)


def _softmax_row(s):
    return torch.exp(s - torch.logsumexp(s, dim=0))


def _rectified_row(s):
    keep = torch.nonzero(s >= 0).flatten()
    out = torch.zeros_like(s)
    if keep.numel() == 0:
        return out
    return out.index_copy(0, keep, _softmax_row(s[keep]))


def _plus_one_row(s):
    lse = torch.logsumexp(torch.cat([s, s.new_zeros(1)]), dim=0)
    return torch.exp(s - lse)


def _sink_row(s, sink):
    lse = torch.logsumexp(torch.cat([s, sink.reshape(1)]), dim=0)
    return torch.exp(s - lse)


def attention_f64(q, k, v, arm, causal=True, scale=None, attn_mask=None, **arm_params):
    """Return (o [B, Tq, Hq, D], w [B, Hq, Tq, Tk]) in float64, differentiable.

    arm_params: ``head_scale [Hq]`` (scalable_softpick), ``sink_logits [Hq]``
    (gpt_oss_sink), ``gate [B, Tq, Hq, D]`` (gated_attention), ``eps`` (softpick,
    scalable_softpick, relu_softmax).
    """
    q, k, v = q.double(), k.double(), v.double()
    B, Tq, Hq, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    group = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    eps = float(arm_params.get("eps", EPS))
    if attn_mask is not None:
        attn_mask = attn_mask.expand(B, Hq, Tq, Tk)

    if "head_scale" in arm_params:
        head_scale = arm_params["head_scale"].double().unbind(0)
    if "sink_logits" in arm_params:
        sink_logits = arm_params["sink_logits"].double().unbind(0)

    out_rows, weight_rows = [], []
    for b in range(B):
        # per-(batch, head) views first, so each row's autograd touches only [Tk, D]
        keys_b = [k[b, :, j] for j in range(Hkv)]
        values_b = [v[b, :, j] for j in range(Hkv)]
        for h in range(Hq):
            kvh = h // group
            q_rows = q[b, :, h].unbind(0)
            if arm == "gated_attention":
                gate_rows = arm_params["gate"][b, :, h].double().unbind(0)
            for i in range(Tq):
                pos = Tk - Tq + i
                visible = [j for j in range(Tk)
                           if (not causal or j <= pos)
                           and (attn_mask is None or bool(attn_mask[b, h, i, j]))]
                if not visible:
                    weight_rows.append(q.new_zeros(Tk))
                    out_rows.append(q.new_zeros(D))
                    continue
                idx = None
                if visible == list(range(len(visible))):
                    keys, values = keys_b[kvh][:len(visible)], values_b[kvh][:len(visible)]
                else:
                    idx = torch.tensor(visible)
                    keys, values = keys_b[kvh][idx], values_b[kvh][idx]
                s = (keys @ q_rows[i]) * scale
                if arm in ("softmax", "gated_attention"):
                    a = _softmax_row(s)
                elif arm == "softpick":
                    a = _softpick_row(s, eps)
                elif arm == "scalable_softpick":
                    factor = head_scale[h] * math.log(pos + 2)
                    a = _softpick_row(s * factor, eps)
                elif arm == "rectified":
                    a = _rectified_row(s)
                elif arm == "relu_softmax":
                    a = _relu_softmax_row(s, eps)
                elif arm == "softmax_plus_one":
                    a = _plus_one_row(s)
                elif arm == "gpt_oss_sink":
                    a = _sink_row(s, sink_logits[h])
                else:
                    raise ValueError(f"unknown arm {arm!r}")
                o = a @ values
                if arm == "gated_attention":
                    o = o * torch.sigmoid(gate_rows[i])
                out_rows.append(o)
                weight_rows.append(torch.cat([a, a.new_zeros(Tk - len(visible))]) if idx is None
                                   else q.new_zeros(Tk).index_copy(0, idx, a))

    # rows were produced in (b, h, i) order
    out = torch.stack(out_rows).reshape(B, Hq, Tq, D).permute(0, 2, 1, 3)
    weights = torch.stack(weight_rows).reshape(B, Hq, Tq, Tk)
    return out, weights


def attention_f64_dense(q, k, v, arm, causal=True, scale=None, eps=EPS):
    """Whole-matrix float64 attention for long sequences (T = 4096, 8192 on a GPU), where the
    row loop above would take minutes. Same conventions, kernel arms only (softmax,
    softmax_plus_one, softpick, relu_softmax, rectified), no extra parameters. Masked entries
    are dropped with explicit zeros after every elementwise step rather than by -inf alone;
    tests/triton_kernel_cases.py checks it against attention_f64 on short inputs.
    """
    q, k, v = q.double(), k.double(), v.double()
    B, Tq, Hq, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    group = Hq // Hkv
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    rows = torch.arange(Tq, device=q.device)[:, None] + (Tk - Tq)
    visible = (torch.arange(Tk, device=q.device)[None, :] <= rows) if causal else \
        torch.ones(Tq, Tk, dtype=torch.bool, device=q.device)
    zero = s.new_zeros(())
    if arm in ("softmax", "softmax_plus_one"):
        masked = torch.where(visible, s, float("-inf"))
        if arm == "softmax_plus_one":
            masked = torch.cat([masked, s.new_zeros(s.shape[:-1] + (1,))], dim=-1)
        a = torch.softmax(masked, dim=-1)[..., :Tk]
    elif arm == "rectified":
        keep = visible & (s >= 0)
        m = torch.where(keep, s, float("-inf")).amax(-1, keepdim=True).detach()
        m = torch.where(torch.isfinite(m), m, zero)
        e = torch.where(keep, torch.exp(s - m), zero)
        denom = e.sum(-1, keepdim=True)
        a = e / torch.where(denom > 0, denom, s.new_ones(()))
    elif arm in ("softpick", "relu_softmax"):
        m = torch.where(visible, s, float("-inf")).amax(-1, keepdim=True).clamp_min(0.0).detach()
        shifted = torch.where(visible & (s != 0), torch.exp(s - m) - torch.exp(-m), zero)
        num = torch.relu(shifted)
        denom = (shifted.abs() if arm == "softpick" else num).sum(-1, keepdim=True)
        a = num / (denom + eps)
    else:
        raise ValueError(f"attention_f64_dense has no arm {arm!r}")
    o = torch.einsum("bhij,bjhd->bihd", a, v)
    return o, a
