"""Launchers and the autograd Function for the Triton kernels in forward.py / backward.py.

Tensors are [B, T, H, D] with unit stride on D (other strides are passed through). The forward
saves q, k, v, o and L [B, HQ, Tq] (float32, base-2 log-normaliser); the backward recomputes the
scores. Block sizes: 16 under the Triton interpreter (TRITON_INTERPRET=1, CPU tensors); on GPU
`GPU_BLOCKS` for 16-bit inputs, per head-dim bucket (picked by `perf/kernel_ab.py --sweep`, softpick
T 4096 bf16; see perf/KERNELS.md), and small `GPU_BLOCKS_FP32` tiles for fp32 (exact-fp32 dots have
no tensor-core path; large fp32 tiles spill). On Hopper (`set_features`, $SOFTPICK_REPRO_TMA) the
forward reads K/V through TMA tensor descriptors at head dims > 64 and the atomic dQ is a TMA
reduce-add, where each measured faster (perf/KERNELS.md, stop 29).
"""
from __future__ import annotations

import json
import os

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from .backward import attn_bwd_delta_kernel, attn_bwd_dkdv_kernel, attn_bwd_dq_kernel
from .forward import LOG2E, RECTIFIED, RELU_SOFTMAX, SOFTMAX, SOFTPICK, attn_fwd_kernel

ARM_CODES = {"softpick": SOFTPICK, "relu_softmax": RELU_SOFTMAX, "rectified": RECTIFIED, "softmax": SOFTMAX}

# (BM, BN, num_warps, num_stages) per kernel and head-dim bucket (<= 64, > 64); BM = query rows,
# BN = keys per tile.
GPU_BLOCKS = {
    64: {"fwd": (64, 64, 4, 4), "dkdv": (32, 64, 4, 4), "dkdv_atomic": (64, 64, 4, 3), "dq": (64, 64, 4, 3)},
    128: {"fwd": (128, 128, 8, 3), "dkdv": (64, 128, 8, 3), "dkdv_atomic": (64, 128, 8, 3), "dq": (64, 32, 4, 3)},
}
# 'auto' takes the atomic dQ from this many keys on, at head dims <= 64 and not for the softmax
# kernel: where it measured faster on an H200 (perf/KERNELS.md); elsewhere two_pass was as fast or faster
ATOMIC_DQ_MIN_TK = 4096
GPU_BLOCKS_FP32 = {"fwd": (32, 32, 4, 2), "dkdv": (32, 32, 4, 2), "dkdv_atomic": (32, 32, 4, 2),
                   "dq": (32, 32, 4, 2)}
_INTERPRET_BLOCKS = {"fwd": (16, 16, 1, 1), "dkdv": (16, 16, 1, 1), "dkdv_atomic": (16, 16, 1, 1),
                     "dq": (16, 16, 1, 1)}


def _bucket(head_dim: int) -> int:
    return 64 if head_dim <= 64 else 128


def set_gpu_blocks(head_dim: int | None = None, **blocks: tuple) -> None:
    """Override GPU block configurations (BM, BN, warps, stages), e.g.
    set_gpu_blocks(fwd=(128, 64, 8, 3)) for every head dim, or set_gpu_blocks(128, fwd=...) for
    head dims above 64 only."""
    buckets = list(GPU_BLOCKS) if head_dim is None else [_bucket(head_dim)]
    for name, cfg in blocks.items():
        if name not in GPU_BLOCKS[64]:
            raise ValueError(f"unknown kernel {name!r}; expected one of {sorted(GPU_BLOCKS[64])}")
        for b in buckets:
            GPU_BLOCKS[b][name] = tuple(int(x) for x in cfg)


def _blocks_from_env() -> None:
    """$SOFTPICK_REPRO_GPU_BLOCKS: a JSON file or string {"64": {"fwd": [BM, BN, warps, stages]},
    "128": {...}}, e.g. the winners that `perf/kernel_ab.py --sweep` wrote for another GPU."""
    text = os.environ.get("SOFTPICK_REPRO_GPU_BLOCKS")
    if not text:
        return
    try:
        spec = json.loads(open(text).read() if os.path.isfile(text) else text)
        for head_dim, blocks in spec.items():
            set_gpu_blocks(int(head_dim), **blocks)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"SOFTPICK_REPRO_GPU_BLOCKS={text!r} is not a valid block spec: {exc}") from exc


_blocks_from_env()


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _blocks(name: str, t: torch.Tensor) -> tuple[int, int, int, int]:
    if t.device.type != "cuda":
        return _INTERPRET_BLOCKS[name]
    if t.dtype == torch.float32:
        return GPU_BLOCKS_FP32[name]
    return GPU_BLOCKS[_bucket(t.shape[-1])][name]


def check_device(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and interpreting():
        return
    raise RuntimeError(
        f"Triton attention kernels need CUDA tensors (got device {t.device}); on CPU they run only "
        "under the Triton interpreter, with TRITON_INTERPRET=1 set before Python starts")


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (Triton would use tf32 by default), so fp32 checks are tight
    return "ieee" if dtype == torch.float32 else "tf32"


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _head_dims(D: int) -> tuple[int, int]:
    return D, max(16, triton.next_power_of_2(D))


TMA_MODES = ("auto", "on", "off")
# 'auto' takes the forward's TMA loads from this head dim on: faster at D 128, no gain at D 64
# (perf/KERNELS.md, H200)
TMA_FORWARD_MIN_HEAD_DIM = 65
_features = {"tma": "auto", "tma_reduce": True}


def set_features(tma: str | None = None, tma_reduce: bool | None = None) -> None:
    """tma: 'auto' (the forward's K/V through TMA descriptors on Hopper and newer GPUs from
    TMA_FORWARD_MIN_HEAD_DIM on), 'on' (at every head dim, also under the Triton interpreter: how
    the CPU tests reach that path) or 'off'; in each case only where the layout allows.
    tma_reduce: with tma not 'off', the atomic dQ as TMA reduce-adds (compiled kernels on Hopper only)."""
    if tma is not None:
        if tma not in TMA_MODES:
            raise ValueError(f"unknown tma mode {tma!r}; expected one of {TMA_MODES}")
        _features["tma"] = tma
    if tma_reduce is not None:
        _features["tma_reduce"] = bool(tma_reduce)


try:
    set_features(tma=os.environ.get("SOFTPICK_REPRO_TMA", "auto"))
except ValueError as exc:
    raise ValueError(f"SOFTPICK_REPRO_TMA: {exc}") from exc


def _tma_layout_ok(t: torch.Tensor) -> bool:
    """What the TMA unit needs: a 16-byte aligned start and 16-byte multiples for every outer stride.
    Under torch.compile only the strides are checked: Dynamo can trace neither data_ptr() nor
    storage_offset(). The k and v a compiled model hands over are projection outputs (offset 0); a
    misaligned view would stop at TensorDescriptor's own alignment assertion, not read wrong data."""
    size = t.element_size()
    if t.stride(-1) != 1 or any(st * size % 16 for st in t.stride()[:-1]):
        return False
    return torch.compiler.is_compiling() or t.data_ptr() % 16 == 0


@torch._dynamo.assume_constant_result  # a constant while torch.compile traces the launchers
def _hopper_index(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def _hopper(t: torch.Tensor) -> bool:
    return t.device.type == "cuda" and _hopper_index(t.device.index if t.device.index is not None else 0)


def _forward_tma(k: torch.Tensor, v: torch.Tensor) -> bool:
    mode = _features["tma"]
    if mode == "off" or (mode == "auto" and (not _hopper(k) or k.shape[-1] < TMA_FORWARD_MIN_HEAD_DIM)):
        return False
    return _tma_layout_ok(k) and _tma_layout_ok(v)


def _reduce_tma(dqa: torch.Tensor) -> bool:
    # no interpreter implementation of the TMA reduce: compiled Hopper kernels only
    return _features["tma"] != "off" and _features["tma_reduce"] and _hopper(dqa) and _tma_layout_ok(dqa)


def _desc(t: torch.Tensor, rows: int, BD: int):
    """A [1, rows, 1, BD] tile descriptor over a [B, T, H, D] tensor."""
    return TensorDescriptor.from_tensor(t, [1, rows, 1, BD])


def attn_forward(q, k, v, sink, arm_code: int, causal: bool, scale: float, eps: float):
    B, Tq, HQ, D = q.shape
    Tk, HKV = k.shape[1], k.shape[2]
    o = torch.empty_like(q)
    L = torch.empty(B, HQ, Tq, device=q.device, dtype=torch.float32)
    BM, BN, warps, stages = _blocks("fwd", q)
    # short query blocks when decoding: a 128-row block for one query wastes the tile
    BM = min(BM, max(16, triton.next_power_of_2(Tq)))
    head_dim, BD = _head_dims(D)
    grid = (triton.cdiv(Tq, BM), B * HQ)
    tma = _forward_tma(k, v)
    kk, vv = (_desc(k, BN, BD), _desc(v, BN, BD)) if tma else (k, v)
    attn_fwd_kernel[grid](
        q, kk, vv, o, L, sink if sink is not None else L,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        Tq, Tk, HQ, HQ // HKV, scale * LOG2E, eps,
        ARM=arm_code, HAS_SINK=sink is not None, CAUSAL=causal, HEAD_DIM=head_dim, BD=BD, BM=BM, BN=BN,
        DOT_PREC=_dot_precision(q.dtype), TMA=tma, num_warps=warps, num_stages=stages)
    return o, L


DQ_MODES = ("auto", "atomic", "two_pass")
_dq_mode = "auto"


def set_dq_mode(mode: str) -> None:
    """How the backward computes dQ: 'atomic' (one pass, fp32 atomic adds), 'two_pass' (a second
    kernel, bitwise deterministic) or 'auto' (atomic where it measured faster, see
    ATOMIC_DQ_MIN_TK, and never under torch.use_deterministic_algorithms(True))."""
    global _dq_mode
    if mode not in DQ_MODES:
        raise ValueError(f"unknown dq mode {mode!r}; expected one of {DQ_MODES}")
    _dq_mode = mode


try:  # a bad value fails when the kernels are imported, not at the first backward of a run
    set_dq_mode(os.environ.get("SOFTPICK_REPRO_DQ_MODE", "auto"))
except ValueError as exc:
    raise ValueError(f"SOFTPICK_REPRO_DQ_MODE: {exc}") from exc


def _atomic_dq(arm_code: int, Tk: int, D: int) -> bool:
    if _dq_mode == "auto":
        return (not torch.are_deterministic_algorithms_enabled() and arm_code != SOFTMAX
                and D <= 64 and Tk >= ATOMIC_DQ_MIN_TK)
    return _dq_mode == "atomic"


def attn_backward(do, q, k, v, o, L, arm_code: int, causal: bool, scale: float):
    B, Tq, HQ, D = q.shape
    Tk, HKV = k.shape[1], k.shape[2]
    group = HQ // HKV
    do = _unit_last(do)
    head_dim, BD = _head_dims(D)
    atomic = _atomic_dq(arm_code, Tk, D)
    delta = torch.empty(B, HQ, Tq, device=q.device, dtype=torch.float32)
    # the atomic path's fp32 dQ accumulator, zeroed by the delta kernel (a 1-element stand-in otherwise)
    dqa = torch.empty((B, Tq, HQ, D) if atomic else (1, 1, 1, 1), device=q.device, dtype=torch.float32)
    BMD = 16 if q.device.type != "cuda" else 64
    attn_bwd_delta_kernel[(triton.cdiv(Tq, BMD), B * HQ)](
        o, do, delta, dqa, o.stride(0), o.stride(1), o.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dqa.stride(0), dqa.stride(1), dqa.stride(2), Tq, HQ,
        ZERO_DQA=atomic, HEAD_DIM=head_dim, BD=BD, BM=BMD)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    prec = _dot_precision(q.dtype)
    BM, BN, warps, stages = _blocks("dkdv_atomic" if atomic else "dkdv", q)
    tma_dq = atomic and _reduce_tma(dqa)
    attn_bwd_dkdv_kernel[(triton.cdiv(Tk, BN), B * HKV)](
        q, k, v, do, L, delta, dk, dv, _desc(dqa, BM, BD) if tma_dq else dqa,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
        dqa.stride(0), dqa.stride(1), dqa.stride(2),
        Tq, Tk, HQ, HKV, group, scale, scale * LOG2E,
        ARM=arm_code, CAUSAL=causal, ATOMIC_DQ=atomic, HEAD_DIM=head_dim, BD=BD, BM=BM, BN=BN,
        DOT_PREC=prec, TMA_DQ=tma_dq, num_warps=warps, num_stages=stages)
    if atomic:
        return (dqa * scale).to(q.dtype), dk, dv, delta
    dq = torch.empty_like(q)
    BM, BN, warps, stages = _blocks("dq", q)
    BM = min(BM, max(16, triton.next_power_of_2(Tq)))
    attn_bwd_dq_kernel[(triton.cdiv(Tq, BM), B * HQ)](
        q, k, v, do, L, delta, dq,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dq.stride(0), dq.stride(1), dq.stride(2),
        Tq, Tk, HQ, group, scale, scale * LOG2E,
        ARM=arm_code, CAUSAL=causal, HEAD_DIM=head_dim, BD=BD, BM=BM, BN=BN, DOT_PREC=prec,
        num_warps=warps, num_stages=stages)
    return dq, dk, dv, delta


class TritonAttention(torch.autograd.Function):
    """o = attention(q, k, v) for one arm code; `sink` [HQ] (softmax only) gets a gradient too."""

    @staticmethod
    def forward(ctx, q, k, v, sink, arm_code, causal, scale, eps):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        o, L = attn_forward(q, k, v, sink, arm_code, causal, scale, eps)
        ctx.save_for_backward(q, k, v, o, L, sink)
        ctx.arm_code, ctx.causal, ctx.scale = arm_code, causal, scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, L, sink = ctx.saved_tensors
        dq, dk, dv, delta = attn_backward(do, q, k, v, o, L, ctx.arm_code, ctx.causal, ctx.scale)
        dsink = None
        if sink is not None and ctx.needs_input_grad[3]:
            # d/d(sink) of softmax with a denominator-only logit: -sum_rows p_sink * rowsum(dO * O)
            p_sink = torch.exp2(sink.float()[None, :, None] * LOG2E - L)
            dsink = -(p_sink * delta).sum((0, 2)).to(sink.dtype)
        return dq, dk, dv, dsink, None, None, None, None


def kernel_attention(q, k, v, arm: str, *, causal: bool = True, scale: float, eps: float = 1e-6,
                     sink: torch.Tensor | None = None) -> torch.Tensor:
    """Run the own kernels for one of ARM_CODES; `sink` only with arm 'softmax'."""
    check_device(q)
    code = ARM_CODES[arm]
    if sink is not None:
        if code != SOFTMAX:
            raise ValueError(f"a sink logit only applies to the softmax kernel, not {arm!r}")
        sink = sink.contiguous()
    return TritonAttention.apply(q, k, v, sink, code, bool(causal), float(scale), float(eps))
