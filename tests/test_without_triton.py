"""The CPU pipeline installs and runs where Triton and fla have no wheels (macOS): pyproject
marks them Linux-only, and the package imports them lazily. The second test runs the CPU code
paths (tests/cpu_paths_without_triton.py) in a fresh interpreter in which importing triton or
fla fails; .ci/no_triton.sh runs them in a real venv without either installed.
"""
import os
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from softpick_repro.config import REPO_ROOT

GPU_ONLY = ("triton", "flash-linear-attention", "fla-core")


def test_gpu_only_dependencies_are_linux_only():
    deps = [Requirement(d) for d in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in deps:
        if req.name in GPU_ONLY:
            assert req.marker is not None, f"{req.name} has no platform marker"
            assert not req.marker.evaluate({"platform_system": "Darwin"})
            assert req.marker.evaluate({"platform_system": "Linux"})
    assert {r.name for r in deps} >= set(GPU_ONLY)


def test_cpu_paths_run_without_triton_and_fla(tmp_path):
    """In this interpreter importing triton or fla fails (blocked); .ci/no_triton.sh runs the
    same script in a venv that does not have them installed at all."""
    env = {**os.environ, "SOFTPICK_REPRO_ATTENTION_BACKEND": "auto", "CUDA_VISIBLE_DEVICES": ""}
    script = REPO_ROOT / "tests" / "cpu_paths_without_triton.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--block"], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
