"""The CPU pipeline installs and runs where Triton and fla have no wheels (macOS): pyproject
marks them Linux-only, and the package imports them lazily. The second test runs the CPU code
paths in a fresh interpreter in which importing triton or fla fails, as in a venv without them.
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


BLOCKED_RUN = r'''
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("triton", "fla"):
            raise ImportError(f"No module named {name!r} (blocked: no wheel on this platform)")
        return None

sys.meta_path.insert(0, Block())
import torch
import softpick_repro
from softpick_repro.model import SoftpickForCausalLM, build_config
from softpick_repro.ops import ARMS, resolve_backend
import softpick_repro.evaluate.quantize, softpick_repro.evaluate.lm_eval_runner  # noqa: F401
import softpick_repro.analysis.attention_probe, softpick_repro.analysis.dead_heads  # noqa: F401
from softpick_repro.tokenize import tokenize_corpus, train_bpe_tokenizer
for arm in ARMS:
    model = SoftpickForCausalLM(build_config("micro-s", arm, 300))
    ids = torch.randint(0, 300, (2, 16))
    out = model(ids, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss)
docs = [f"document number {i} about cats and dogs and {i * 7} birds" for i in range(60)]
train_bpe_tokenizer(docs, 300, 1, sys.argv[1] + "/tok")
manifest = tokenize_corpus(docs, sys.argv[1] + "/tok", sys.argv[1] + "/tokens", val_fraction=0.2,
                           source_hash="x", progress=False)
assert manifest["tokens"]["train"] > 0
assert not any(m.split(".")[0] in ("triton", "fla") for m in sys.modules)
print("ok")
'''


def test_cpu_paths_run_without_triton_and_fla(tmp_path):
    env = {**os.environ, "SOFTPICK_REPRO_ATTENTION_BACKEND": "auto", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(tmp_path)], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
