"""A softmax run is exactly a Llama: export it as one, and read such exports back.

The softmax arm of `SoftpickConfig` with no masked heads is transformers' Llama
architecture (pre-norm RMSNorm, rotate-half RoPE, SwiGLU, no biases, untied embeddings,
softmax attention scaled by 1/sqrt(head_dim)) with the same module names, so its weights load
into `LlamaForCausalLM` unchanged; tests/test_llama_export.py checks that transformers' own
Llama gives our logits. Exported that way (config.json `model_type: llama`) it loads anywhere
a Llama does (transformers, vLLM, llama.cpp converters) with no import of this package. The
other arms keep `model_type: softpick_llama`, which `import softpick_repro` registers.

`load_exported` is the pipeline's one loader of exported and imported model directories:
it reads a Llama export back into `SoftpickForCausalLM` (the analyses need its attention
hooks), everything else through the Auto classes.
"""
from __future__ import annotations

import json
from pathlib import Path

from softpick_repro.model.configuration import SoftpickConfig


def is_plain_llama(config: SoftpickConfig) -> bool:
    """Whether `config` describes exactly a Llama (softmax arm, no masked heads)."""
    return config.attn_arm == "softmax" and not config.masked_heads


def to_llama_config(config: SoftpickConfig):
    """The LlamaConfig of a plain-Llama SoftpickConfig (ValueError for any other arm)."""
    from transformers import LlamaConfig

    if not is_plain_llama(config):
        raise ValueError(f"attn_arm={config.attn_arm!r} (masked heads {config.masked_heads}) is not "
                         "a plain Llama; only the softmax arm without masked heads exports as one")
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings, hidden_act="silu",
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        initializer_range=config.initializer_range, use_cache=config.use_cache,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id)


def from_llama_config(llama: dict) -> SoftpickConfig:
    """SoftpickConfig (softmax arm) of a Llama config.json written by `to_llama_config`."""
    rope = llama.get("rope_parameters") or {}
    theta = rope.get("rope_theta", llama.get("rope_theta", 10000.0))
    return SoftpickConfig(
        vocab_size=llama["vocab_size"], hidden_size=llama["hidden_size"],
        intermediate_size=llama["intermediate_size"], num_hidden_layers=llama["num_hidden_layers"],
        num_attention_heads=llama["num_attention_heads"],
        num_key_value_heads=llama.get("num_key_value_heads"), head_dim=llama.get("head_dim"),
        max_position_embeddings=llama["max_position_embeddings"],
        rms_norm_eps=llama["rms_norm_eps"], rope_theta=float(theta),
        initializer_range=llama.get("initializer_range", 0.006), attn_arm="softmax",
        bos_token_id=llama.get("bos_token_id"), eos_token_id=llama.get("eos_token_id"),
        pad_token_id=llama.get("pad_token_id"))


def as_llama(model):
    """A LlamaForCausalLM holding `model`'s weights (strict: every name must match)."""
    from transformers import LlamaForCausalLM

    llama = LlamaForCausalLM(to_llama_config(model.config)).to(next(model.parameters()).dtype)
    llama.load_state_dict(model.state_dict(), strict=True)
    return llama.eval()


def load_exported(model_dir: str | Path, **kwargs):
    """A `SoftpickForCausalLM` of an exported/imported model directory (Llama or not);
    kwargs go to `from_pretrained` (dtype, ...). Never runs code from the directory."""
    from transformers import AutoModelForCausalLM

    import softpick_repro.model  # noqa: F401  (registers softpick_llama with the Auto classes)
    from softpick_repro.model.modeling import SoftpickForCausalLM

    from softpick_repro.integrity import verify_model_dir

    model_dir = Path(model_dir)
    path = model_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (not a model directory)")
    verify_model_dir(model_dir)  # every *.safetensors against its content digest, file named on failure
    raw = json.loads(path.read_text())
    kwargs = {"trust_remote_code": False, "use_safetensors": True, **kwargs}
    if raw.get("model_type") == "llama":
        return SoftpickForCausalLM.from_pretrained(str(model_dir), config=from_llama_config(raw), **kwargs)
    return AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
