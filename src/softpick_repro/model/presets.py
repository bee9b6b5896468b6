"""Model size presets and `build_config`.

Names are the `{size}` wildcard of the workflow: `340m`, `1.8b` (the paper's sizes),
`tiny-s` / `tiny-m` (the embedded CPU default; tiny-s stands in for 340M, tiny-m for 1.8B),
`micro-s` / `micro-m` (smoke tests). The vocabulary size is not part of a preset: it comes
from the tokenizer when the config is built. Every width is a multiple of 64 (of 128 from
tiny-s up, so quantizer groups of 128 fit) and every head dim lies in 32..128 (the range the
Triton kernels are built for).
"""
from __future__ import annotations

import dataclasses
import math

from softpick_repro.model.configuration import SoftpickConfig


def swiglu_width(hidden_size: int, multiple: int = 128) -> int:
    """SwiGLU inner width ~ 8/3 * hidden, rounded up to `multiple`.

    128 lets group-wise quantizers with group size 64 or 128 (GPTQ W4A16, HQQ) divide the
    input width of down_proj.
    """
    return multiple * math.ceil(8 * hidden_size / 3 / multiple)


def _preset(hidden, layers, heads, intermediate, max_pos):
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                head_dim=hidden // heads, intermediate_size=intermediate,
                max_position_embeddings=max_pos)


PRESETS: dict[str, dict] = {
    # Paper sizes (SOFTPICK.md section 3; 2816/5632 are fla's 256-rounded 8/3 widths).
    "340m": _preset(1024, 24, 16, 2816, 8192),
    "1.8b": _preset(2048, 32, 32, 5632, 8192),
    # One-GPU check of every rule's CUDA path (config/gpu.yaml), sized for
    # 4096-token embedded BPE (30M / 91M with it), small enough that the whole DAG runs in minutes on one H200.
    "gpu-s": _preset(512, 8, 8, swiglu_width(512), 2048),
    "gpu-m": _preset(768, 12, 12, swiglu_width(768), 2048),
    # CPU default: a 2-core CPU trains a few million tokens of these in minutes.
    "tiny-s": _preset(128, 4, 4, swiglu_width(128), 2048),
    "tiny-m": _preset(256, 6, 4, swiglu_width(256), 2048),
    # Smoke tests.
    "micro-s": _preset(64, 2, 2, swiglu_width(64), 1024),
    "micro-m": _preset(64, 3, 2, swiglu_width(64), 1024),
}

_FIELDS = frozenset(f.name for f in dataclasses.fields(SoftpickConfig))


def build_config(preset: str, arm: str, vocab_size: int, **overrides) -> SoftpickConfig:
    """The config of `preset` with attention arm `arm` and the tokenizer's `vocab_size`.

    `overrides` replace preset or default fields (e.g. `masked_heads`, `bos_token_id`); an
    unknown field name is an error rather than a silently stored attribute.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown SoftpickConfig field(s) in overrides: {', '.join(unknown)}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    kwargs = {**PRESETS[preset], "attn_arm": arm, "vocab_size": vocab_size, **overrides}
    return SoftpickConfig(**kwargs)


def check_context(config: SoftpickConfig, length: int, what: str) -> None:
    """A sequence of `length` tokens must fit the model's positions (RoPE would run past
    `max_position_embeddings` without any error, so nothing else would notice)."""
    if int(length) > config.max_position_embeddings:
        raise ValueError(f"{what}={length} exceeds the model's context of "
                         f"{config.max_position_embeddings} positions (max_position_embeddings)")


def count_parameters(config: SoftpickConfig, embeddings: bool = True) -> int:
    """Number of parameters of `SoftpickForCausalLM(config)`, computed from the config.

    `embeddings=False` leaves out the input embedding table only (a lookup, no FLOPs); the
    output head `lm_head` is a matmul and always counts.
    """
    d, v = config.hidden_size, config.vocab_size
    h, hkv, hd = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    q_rows = 2 * h * hd if config.attn_arm == "gated_attention" else h * hd
    attn = d * q_rows + 2 * d * hkv * hd + h * hd * d
    if config.attn_arm in ("scalable_softpick", "gpt_oss_sink"):
        attn += h
    mlp = 3 * d * config.intermediate_size
    per_layer = attn + mlp + 2 * d  # two RMSNorm weights
    total = config.num_hidden_layers * per_layer + d + v * d  # final norm, lm_head
    return total + (v * d if embeddings else 0)


__all__ = ["PRESETS", "build_config", "check_context", "count_parameters", "swiglu_width"]
