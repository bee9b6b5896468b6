"""Triton attention kernels: correctness runs in a subprocess, plus fast argument checks here.

TRITON_INTERPRET=1 only takes effect when it is in the environment before Python starts, so the
float64 comparisons (tests/triton_kernel_cases.py) run in a child process with it set. On a machine
with CUDA the same cases also run compiled, without the interpreter (bf16 included).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
CASES = TESTS / "triton_kernel_cases.py"


def _run_cases(interpret: bool, timeout: int, dq_mode: str = "auto", tma: str = "auto") -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["SOFTPICK_REPRO_DQ_MODE"] = dq_mode  # the small cases take two_pass under auto
    env["SOFTPICK_REPRO_TMA"] = tma  # 'on': the forward's tensor-descriptor loads at every head dim
    if interpret:
        env["TRITON_INTERPRET"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""  # the interpreter works on CPU tensors
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS.parent / "src"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    return subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=timeout)


def _interpreter_broken() -> str | None:
    """Triton's interpreter before 3.7 calls int() on 1-element arrays, which numpy >= 2.4 refuses
    (triton-lang/triton#9171, fixed by #9172): every kernel with tensor loop bounds fails there."""
    import numpy
    import triton

    def major_minor(v):
        return tuple(int(x) for x in v.split(".")[:2])

    if major_minor(triton.__version__) < (3, 7) and major_minor(numpy.__version__) >= (2, 4):
        return (f"Triton {triton.__version__}'s interpreter is incompatible with numpy {numpy.__version__} "
                "(triton-lang/triton#9171); the pinned Triton 3.9 has the fix")
    return None


@pytest.mark.parametrize("dq_mode,tma", [("auto", "auto"), ("atomic", "auto"), ("atomic", "on")])
def test_kernels_match_float64_under_interpreter(dq_mode, tma):
    reason = _interpreter_broken()
    if reason:
        pytest.skip(reason)
    res = _run_cases(interpret=True, timeout=600, dq_mode=dq_mode, tma=tma)
    assert res.returncode == 0, f"interpreter cases failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
    assert " passed" in res.stdout and " skipped" not in res.stdout, res.stdout[-2000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernels_match_float64_compiled_on_gpu():
    res = _run_cases(interpret=False, timeout=900)
    assert res.returncode == 0, f"GPU cases failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("tma", ["on", "off"])
def test_compiled_kernels_match_eager_on_gpu(tma):
    """torch.compile (fullgraph) traces the launchers, tensor descriptors included (Dynamo rebuilds
    them from the tensors), and gives eager's values and gradients."""
    from softpick_repro.ops.triton import launch, triton_attention

    launch.set_features(tma=tma)
    try:
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v, do = (torch.randn(2, 4100, 4, 64, device="cuda", generator=g, dtype=torch.bfloat16)
                       for _ in range(4))

        def run(fn):
            qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
            o = fn(qq, kk, vv)
            return [o, *torch.autograd.grad(o, (qq, kk, vv), do)]

        eager = run(lambda a, b, c: triton_attention(a, b, c, "softpick"))
        torch._dynamo.reset()
        compiled = run(torch.compile(lambda a, b, c: triton_attention(a, b, c, "softpick"), fullgraph=True))
        for name, x, y in zip(("o", "dq", "dk", "dv"), compiled, eager):
            err = ((x.float() - y.float()).norm() / y.float().norm()).item()
            assert err < 1e-2, f"{name}: compiled vs eager relative error {err:.2e} (tma={tma})"
    finally:
        launch.set_features(tma="auto")


def _qkv(T=8, H=2, D=32):
    return torch.randn(1, T, H, D), torch.randn(1, T, H, D), torch.randn(1, T, H, D)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="checks the non-interpreter error")
def test_cpu_tensors_without_interpreter_raise_a_clear_error():
    from softpick_repro.ops.triton import triton_attention

    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        triton_attention(*_qkv(), "softpick")


@pytest.mark.parametrize("arm,params,match", [
    ("softmax_2", {}, "unknown arm"),
    ("gpt_oss_sink", {}, "sink_logits"),
    ("softpick", {"gate": torch.zeros(1)}, "needs arm_params"),
    ("softpick", {"eps": -1.0}, "eps must be >= 0"),
])
def test_bad_arguments_are_named(arm, params, match):
    from softpick_repro.ops.triton import triton_attention

    with pytest.raises(ValueError, match=match):
        triton_attention(*_qkv(), arm, **params)


def test_bad_shapes_are_named():
    from softpick_repro.ops.triton import triton_attention

    q, k, v = _qkv(H=3)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        triton_attention(q, k[:, :, :2], v[:, :, :2], "softpick")
    with pytest.raises(ValueError, match="one dtype"):
        triton_attention(q.half(), k, v, "softpick")


def test_bad_tma_setting_is_named():
    from softpick_repro.ops.triton import launch

    with pytest.raises(ValueError, match="unknown tma mode 'always'"):
        launch.set_features(tma="always")
    env = dict(os.environ, SOFTPICK_REPRO_TMA="yes", PYTHONPATH=str(TESTS.parent / "src"))
    res = subprocess.run([sys.executable, "-c", "import softpick_repro.ops.triton"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "SOFTPICK_REPRO_TMA: unknown tma mode 'yes'" in res.stderr, res.stderr[-2000:]


def test_triton_arms_cover_every_arm():
    from softpick_repro.ops import ARMS
    from softpick_repro.ops.triton import TRITON_ARMS

    assert set(TRITON_ARMS) == set(ARMS)


def test_softmax_family_routing_on_cpu_uses_own_kernel():
    from softpick_repro.ops.triton import softmax_family

    q, k, _ = _qkv()
    assert softmax_family.choose(q, k, causal=True, has_sink=False) == "triton"
    with pytest.raises(ValueError, match="cannot run this call"):
        softmax_family.choose(q, k, causal=True, has_sink=True, impl="sdpa")
