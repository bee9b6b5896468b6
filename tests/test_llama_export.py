"""A softmax run exports as transformers' own Llama (same logits), other arms stay ours, and
the pipeline's loader reads both back into SoftpickForCausalLM."""
import json
import subprocess
import sys

import pytest
import torch

from softpick_repro.model import SoftpickForCausalLM, build_config
from softpick_repro.model.llama_export import as_llama, is_plain_llama, load_exported
from softpick_repro.train.export import save_model_files

IDS = torch.tensor([[1, 5, 9, 2, 7, 7, 3, 11, 4, 60]])


def _model(arm, seed=0):
    torch.manual_seed(seed)
    cfg = build_config("micro-s", arm, 64)
    model = SoftpickForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms so a misplaced weight would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def test_llama_gives_our_logits():
    model = _model("softmax")
    llama = as_llama(model)
    assert type(llama).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        ours, theirs = model(IDS).logits, llama(IDS).logits
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours - theirs).abs().max()


def test_only_plain_softmax_is_a_llama():
    assert is_plain_llama(_model("softmax").config)
    assert not is_plain_llama(_model("softpick").config)
    masked = build_config("micro-s", "softmax", 64, masked_heads=[[0, 1]])
    assert not is_plain_llama(masked)
    with pytest.raises(ValueError, match="not a plain Llama"):
        as_llama(_model("softpick"))


def test_exports_load_without_and_with_the_package(tmp_path):
    for arm in ("softmax", "softpick"):
        save_model_files(_model(arm), tmp_path / arm)
    assert json.loads((tmp_path / "softmax" / "config.json").read_text())["model_type"] == "llama"
    assert json.loads((tmp_path / "softpick" / "config.json").read_text())["model_type"] == "softpick_llama"
    expected = {arm: _model(arm)(IDS).logits.detach() for arm in ("softmax", "softpick")}
    torch.save(expected, tmp_path / "expected.pt")
    # A fresh interpreter: the Llama export needs no import of ours; softpick needs `import softpick_repro`.
    script = f"""
import torch
from transformers import AutoModelForCausalLM
ids = torch.tensor({IDS.tolist()})
expected = torch.load(r"{tmp_path / 'expected.pt'}", weights_only=True)
llama = AutoModelForCausalLM.from_pretrained(r"{tmp_path / 'softmax'}").eval()
assert type(llama).__name__ == "LlamaForCausalLM", type(llama)
assert torch.allclose(llama(ids).logits, expected["softmax"], atol=1e-5)
import sys
assert "softpick_repro" not in sys.modules
try:
    AutoModelForCausalLM.from_pretrained(r"{tmp_path / 'softpick'}")
    raise SystemExit("softpick loaded without the package")
except (ValueError, KeyError):
    pass
import softpick_repro  # registers softpick_llama
model = AutoModelForCausalLM.from_pretrained(r"{tmp_path / 'softpick'}").eval()
assert torch.allclose(model(ids).logits, expected["softpick"], atol=1e-5)
print("ok")
"""
    env_path = {"PYTHONPATH": str(__import__("softpick_repro").__path__[0].rsplit("/", 1)[0])}
    import os

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, **env_path}, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    # the pipeline's loader reads both into our class
    for arm in ("softmax", "softpick"):
        loaded = load_exported(tmp_path / arm)
        assert isinstance(loaded, SoftpickForCausalLM) and loaded.config.attn_arm == arm
        assert torch.allclose(loaded.eval()(IDS).logits, expected[arm], atol=1e-5)


def test_package_import_first_registers_when_transformers_arrives(tmp_path):
    """`import softpick_repro` before transformers: the package stays light (no transformers,
    no torch) until transformers is imported, whose import then registers softpick_llama; a
    library's `importlib.util.find_spec("transformers")` availability check in between does
    not use the hook up."""
    save_model_files(_model("softpick"), tmp_path / "softpick")
    expected = _model("softpick")(IDS).logits.detach()
    torch.save({"softpick": expected}, tmp_path / "expected.pt")
    script = f"""
import importlib.util, sys
import softpick_repro
import softpick_repro.config, softpick_repro.plan, softpick_repro.report.tables
assert "transformers" not in sys.modules and "torch" not in sys.modules, "the package import pulled in a model stack"
assert importlib.util.find_spec("transformers") is not None and "transformers" not in sys.modules
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(r"{tmp_path / 'softpick'}").eval()
assert type(model).__name__ == "SoftpickForCausalLM", type(model)
ids = torch.tensor({IDS.tolist()})
assert torch.allclose(model(ids).logits, torch.load(r"{tmp_path / 'expected.pt'}", weights_only=True)["softpick"], atol=1e-5)
print("ok")
"""
    import os

    env_path = {"PYTHONPATH": str(__import__("softpick_repro").__path__[0].rsplit("/", 1)[0])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, **env_path}, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
