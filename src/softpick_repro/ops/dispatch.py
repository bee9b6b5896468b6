"""The one place that decides which implementation computes attention.

Backends:
- ``auto`` (default): the pure-torch reference on CPU; on CUDA the Triton kernels for the
  arms that have them (``softpick_repro.ops.triton.TRITON_ARMS``), torch SDPA for the
  plain-softmax arms (softmax, gated_attention) otherwise, else the reference.
- ``reference``: always the pure-torch reference (``ops/reference.py``).
- ``triton``: always the Triton kernels; an error if they are missing or lack the arm.

Requests for the weights (``return_weights=True``) or with an ``attn_mask`` always take
the reference path, whatever the backend. The initial backend can be set with the
environment variable ``SOFTPICK_REPRO_ATTENTION_BACKEND`` (handy for tests).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from typing import Iterator

import torch
import torch.nn.functional as F

from .reference import check_attention_args, query_positions, reference_attention

BACKENDS = ("auto", "reference", "triton")
_SDPA_ARMS = ("softmax", "gated_attention")
_ENV = "SOFTPICK_REPRO_ATTENTION_BACKEND"


def _checked(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


_backend = _checked(os.environ.get(_ENV, "auto"))
_triton_cache: dict = {}


def get_backend() -> str:
    return _backend


def set_backend(name: str) -> None:
    """Select the attention backend for the whole process."""
    global _backend
    _backend = _checked(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily select a backend: ``with use_backend("reference"): ...``."""
    global _backend
    previous = _backend
    _backend = _checked(name)
    try:
        yield
    finally:
        _backend = previous


@torch._dynamo.assume_constant_result
def _triton_problem() -> str:
    """'' if ``softpick_repro.ops.triton`` imports with its API, else why not; cached.

    Under torch.compile this runs once while tracing and its result is a constant: a first call
    inside a compiled model would otherwise break the graph at the import (a function Dynamo
    skips), once per layer."""
    if "problem" not in _triton_cache:
        try:
            mod = importlib.import_module(f"{__package__}.triton")
        except ImportError as exc:  # triton itself unavailable (e.g. macOS)
            _triton_cache["problem"] = f"cannot import {__package__}.triton: {exc}"
        else:
            missing = [n for n in ("triton_attention", "TRITON_ARMS") if not hasattr(mod, n)]
            _triton_cache["problem"] = f"{__package__}.triton lacks {missing}" if missing else ""
    return _triton_cache["problem"]


def _load_triton():
    """Return (module, None) or (None, reason) for ``softpick_repro.ops.triton``."""
    problem = _triton_problem()
    if problem:
        return None, problem
    from . import triton as mod  # already imported by _triton_problem: no import while tracing

    return mod, None


def resolve_backend(arm: str, device: torch.device, *, return_weights: bool = False,
                    attn_mask=None) -> str:
    """Which implementation `attention` would use: 'reference', 'triton' or 'sdpa'."""
    if return_weights or attn_mask is not None:
        return "reference"
    if _backend == "reference":
        return "reference"
    if _backend == "triton":
        mod, reason = _load_triton()
        if mod is None:
            raise RuntimeError(f"attention backend 'triton' was requested but {reason}")
        if arm not in mod.TRITON_ARMS:
            raise RuntimeError(f"attention backend 'triton' has no kernel for arm {arm!r} "
                               f"(kernels exist for {sorted(mod.TRITON_ARMS)})")
        return "triton"
    if device.type != "cuda":
        return "reference"
    mod, reason = _load_triton()
    if mod is not None and arm in mod.TRITON_ARMS:
        return "triton"
    if arm in _SDPA_ARMS:
        return "sdpa"
    if mod is None and not _triton_cache.get("warned"):
        _triton_cache["warned"] = True
        warnings.warn(f"Triton attention unavailable ({reason}); using the pure-torch "
                      "reference on CUDA, which materializes T x T scores", RuntimeWarning)
    return "reference"


def sdpa_attention(q, k, v, arm, *, causal=True, scale=None, **arm_params):
    """softmax / gated_attention through torch SDPA, with the bottom-right causal alignment
    of the ops convention (query i at key position Tk - Tq + i)."""
    if arm not in _SDPA_ARMS:
        raise ValueError(f"sdpa_attention handles {_SDPA_ARMS}, not {arm!r}")
    Tq, Tk, Hq, Hkv = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    mask, is_causal = None, False
    if causal and Tq > 1:
        if Tq == Tk:
            is_causal = True
        else:
            pos = query_positions(Tq, Tk, q.device)
            mask = torch.arange(Tk, device=q.device)[None, :] <= pos[:, None]
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
        is_causal=is_causal, scale=scale, enable_gqa=Hq != Hkv,
    ).transpose(1, 2)
    if arm == "gated_attention":
        o = o * torch.sigmoid(arm_params["gate"].to(o.dtype))
    return o


def attention(q, k, v, arm, *, causal=True, scale=None, return_weights=False, attn_mask=None,
              **arm_params):
    """Attention for `arm` through the selected backend.

    q ``[B, Tq, Hq, D]``, k/v ``[B, Tk, Hkv, D]``; returns ``o [B, Tq, Hq, D]`` or, with
    ``return_weights=True``, ``(o, w)`` with ``w [B, Hq, Tq, Tk]`` from the reference.
    Conventions (positions, eps, masks, arm parameters): see ``ops/reference.py``.
    """
    check_attention_args(q, k, v, arm, causal, arm_params, attn_mask)
    backend = resolve_backend(arm, q.device, return_weights=return_weights, attn_mask=attn_mask)
    if backend == "triton":
        mod, _ = _load_triton()
        return mod.triton_attention(q, k, v, arm, causal, scale, **arm_params)
    if backend == "sdpa":
        return sdpa_attention(q, k, v, arm, causal=causal, scale=scale, **arm_params)
    return reference_attention(q, k, v, arm, causal=causal, scale=scale,
                               return_weights=return_weights, attn_mask=attn_mask, **arm_params)


def attention_weights(q, k, v, arm, *, causal=True, scale=None, attn_mask=None, **arm_params):
    """The attention weights ``[B, Hq, Tq, Tk]`` (always the reference path)."""
    return attention(q, k, v, arm, causal=causal, scale=scale, return_weights=True,
                     attn_mask=attn_mask, **arm_params)[1]
