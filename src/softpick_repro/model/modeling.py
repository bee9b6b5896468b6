"""The one model definition: a Llama-style decoder whose attention weights come from an arm.

Conventions:
- Module and parameter names follow Hugging Face Llama (`model.embed_tokens`,
  `model.layers.{i}.self_attn.{q,k,v,o}_proj`, `...mlp.{gate,up,down}_proj`,
  `input_layernorm`, `post_attention_layernorm`, `model.norm`, `lm_head`); every projection
  is a bias-free `nn.Linear`, so quantizers that replace `nn.Linear` (HQQ, bitsandbytes,
  llmcompressor/GPTQ) work unchanged.
- Arm parameters: `self_attn.head_scale [H]` (scalable_softpick's s_h) and
  `self_attn.sink_logits [H]` (gpt_oss_sink). gated_attention widens `q_proj` to 2*H*D
  output rows: rows [0, H*D) are the queries, rows [H*D, 2*H*D) the gate logits (the
  layout of the authors' fla fork, so its checkpoints convert by copying).
- Activations inside attention use the ops layout [B, T, H, D]; the KV cache stores the
  Hugging Face layout [B, H, T, D]. With a cache, query i sits at absolute position
  past_length + i (ops: `Tk - Tq + i`); RoPE uses `position_ids` (default the same positions).
- `attention_mask` is a 2D padding mask [B, past + T] (1 = token): masked keys get zero
  weight in every arm (ops `attn_mask`). RoPE follows `position_ids` (generate derives them
  from the mask), but scalable_softpick's log(pos + 2) uses the ops position Tk - Tq + i,
  which counts left padding.
- `output_hidden_states` gives num_hidden_layers + 1 tensors: the embedding output, the
  outputs of layers 0 .. L-2, and the final-norm output (as Hugging Face Llama does).
- `output_attentions` gives per-layer weights [B, H, Tq, Tk] from the ops' reference path.
- The "head output" of a head is its D-wide slice of the o_proj input; `masked_heads`
  zeroes those slices (after the gate of gated_attention).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from softpick_repro import ops
from softpick_repro.model.configuration import SoftpickConfig


class SoftpickRMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back before the weight (Llama convention)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


def _rope_cos_sin_fp32(position_ids: torch.Tensor, head_dim: int, theta: float):
    exponent = torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32)
    inv_freq = 1.0 / (theta ** (exponent / head_dim))
    freqs = position_ids.float()[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


@torch.library.custom_op("softpick_repro::rope_cos_sin", mutates_args=())
def _rope_cos_sin_op(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _rope_cos_sin_fp32(position_ids, head_dim, theta)


@_rope_cos_sin_op.register_fake
def _(position_ids, head_dim, theta):
    shape = (*position_ids.shape, head_dim)
    return (position_ids.new_empty(shape, dtype=torch.float32),
            position_ids.new_empty(shape, dtype=torch.float32))


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos/sin [B, T, head_dim] for rotate-half RoPE, computed in fp32, returned in `dtype`.

    Only elementwise ops, which autocast leaves in fp32 (Llama's matmul form needs autocast
    disabled), and no Python branching, so torch.fx can trace it. The inverse frequencies
    are recomputed per call (head_dim/2 numbers) rather than kept in a buffer, so loading
    on the meta device never leaves them uninitialized. Under torch.compile the same
    computation runs as one opaque custom op: Inductor would otherwise fuse pow/cos/sin into
    every layer's rotation of q and k, recomputing them per element (8% of the compiled 340M
    step on an H200, perf/KERNELS.md).
    """
    if torch.compiler.is_compiling():
        cos, sin = _rope_cos_sin_op(position_ids, head_dim, float(theta))
    else:
        cos, sin = _rope_cos_sin_fp32(position_ids, head_dim, theta)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by cos/sin [B, T, D] (halves rotated, GPT-NeoX/Llama style)."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class SoftpickMLP(nn.Module):
    def __init__(self, config: SoftpickConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SoftpickAttention(nn.Module):
    def __init__(self, config: SoftpickConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.arm = config.attn_arm
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim ** -0.5
        q_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        self.gated = self.arm == "gated_attention"
        self.q_proj = nn.Linear(config.hidden_size, 2 * q_width if self.gated else q_width, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, kv_width, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, kv_width, bias=False)
        self.o_proj = nn.Linear(q_width, config.hidden_size, bias=False)
        if self.arm == "scalable_softpick":
            self.head_scale = nn.Parameter(torch.full((self.num_heads,), config.scalable_softpick_init))
        if self.arm == "gpt_oss_sink":
            self.sink_logits = nn.Parameter(torch.zeros(self.num_heads))
        self.masked_heads: list[int] = config.masked_heads_by_layer().get(layer_idx, [])

    def forward(self, hidden_states, cos, sin, key_mask: torch.Tensor | None = None,
                past_key_values: Cache | None = None, output_attentions: bool = False):
        bsz, q_len, _ = hidden_states.shape
        width = self.num_heads * self.head_dim
        q = self.q_proj(hidden_states)
        arm_params: dict[str, torch.Tensor] = {}
        if self.gated:
            arm_params["gate"] = q[..., width:].view(bsz, q_len, self.num_heads, self.head_dim)
            q = q[..., :width]
        q = q.view(bsz, q_len, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.num_kv_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.num_kv_heads, self.head_dim)
        # RoPE runs in fp32; under autocast v is bf16, and fused kernels need one dtype
        q, k = apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype)
        if past_key_values is not None:
            k, v = past_key_values.update(k.transpose(1, 2), v.transpose(1, 2), self.layer_idx)
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        if self.arm == "scalable_softpick":
            arm_params["head_scale"] = self.head_scale
        elif self.arm == "gpt_oss_sink":
            arm_params["sink_logits"] = self.sink_logits
        out = ops.attention(q, k, v, self.arm, causal=True, scale=self.scaling,
                            return_weights=output_attentions, attn_mask=key_mask, **arm_params)
        o, weights = out if output_attentions else (out, None)
        if self.masked_heads:
            keep = torch.ones(self.num_heads, device=o.device, dtype=o.dtype)
            keep[self.masked_heads] = 0
            o = o * keep[:, None]
        return self.o_proj(o.reshape(bsz, q_len, width)), weights


class SoftpickDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: SoftpickConfig, layer_idx: int):
        super().__init__()
        self.self_attn = SoftpickAttention(config, layer_idx)
        self.mlp = SoftpickMLP(config)
        self.input_layernorm = SoftpickRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = SoftpickRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, cos=None, sin=None, key_mask=None, past_key_values=None,
                output_attentions=False, **kwargs):
        attn_out, weights = self.self_attn(self.input_layernorm(hidden_states), cos, sin,
                                           key_mask, past_key_values, output_attentions)
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states, weights


class SoftpickPreTrainedModel(PreTrainedModel):
    config_class = SoftpickConfig
    config: SoftpickConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SoftpickDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module: nn.Module) -> None:
        # Linear/Embedding ~ N(0, initializer_range), RMSNorm weights = 1 (base class).
        super()._init_weights(module)
        if isinstance(module, SoftpickAttention):
            if hasattr(module, "head_scale"):
                init.constant_(module.head_scale, self.config.scalable_softpick_init)
            if hasattr(module, "sink_logits"):
                init.normal_(module.sink_logits, mean=0.0, std=self.config.sink_init_std)


def _key_padding_mask(attention_mask: torch.Tensor | None, num_keys: int) -> torch.Tensor | None:
    """2D padding mask [B, Tk] (1 = token) -> bool [B, 1, 1, Tk] for the ops, or None.

    An all-ones mask gives None, so unpadded batches keep the fused kernels (the ops take
    the reference path whenever a mask is given).
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2 or attention_mask.shape[-1] != num_keys:
        raise ValueError(
            "SoftpickModel: attention_mask must be a 2D padding mask [batch, past + new tokens] "
            f"= [B, {num_keys}], got shape {tuple(attention_mask.shape)}")
    if bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


class SoftpickModel(SoftpickPreTrainedModel):
    def __init__(self, config: SoftpickConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [SoftpickDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = SoftpickRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs: Any):
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("SoftpickModel: pass exactly one of input_ids or inputs_embeds")
        output_attentions = bool(cfg.output_attentions if output_attentions is None else output_attentions)
        output_hidden_states = (cfg.output_hidden_states if output_hidden_states is None
                                else output_hidden_states)
        return_dict = cfg.return_dict if return_dict is None else return_dict
        # A cache is never wanted while training (it would only hold references).
        use_cache = (cfg.use_cache and not self.training) if use_cache is None else use_cache
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=cfg)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + inputs_embeds.shape[1],
                                        device=inputs_embeds.device)[None]
        # Value-dependent code stays inside `if` blocks: llmcompressor's sequential GPTQ
        # pipeline symbolically traces this forward and turns such blocks into leaves.
        key_mask = None
        if attention_mask is not None:
            key_mask = _key_padding_mask(attention_mask, past + inputs_embeds.shape[1])
        cos, sin = rope_cos_sin(position_ids, cfg.head_dim, cfg.rope_theta, inputs_embeds.dtype)

        hidden = inputs_embeds
        all_hidden = [] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden, weights = layer(hidden, cos=cos, sin=sin, key_mask=key_mask,
                                    past_key_values=past_key_values,
                                    output_attentions=output_attentions)
            if output_attentions:
                all_attn.append(weights)
        hidden = self.norm(hidden)
        if output_hidden_states:
            all_hidden.append(hidden)  # the final-norm output replaces the last layer's output
        out = BaseModelOutputWithPast(
            last_hidden_state=hidden,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


class SoftpickForCausalLM(SoftpickPreTrainedModel, GenerationMixin):
    def __init__(self, config: SoftpickConfig):
        super().__init__(config)
        self.model = SoftpickModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def set_masked_heads(self, pairs) -> None:
        """Set the static head mask ([layer, head] pairs, 0-based) on the config and layers."""
        self.config.masked_heads = [[int(a), int(b)] for a, b in pairs]
        self.config._check()
        by_layer = self.config.masked_heads_by_layer()
        for i, layer in enumerate(self.model.layers):
            layer.self_attn.masked_heads = by_layer.get(i, [])

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, logits_to_keep: int | torch.Tensor = 0,
                **kwargs: Any):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, past_key_values=past_key_values,
                         inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=True)
        # Dict-style access: under llmcompressor's traced pipeline the base model's output
        # arrives as a plain dict rather than a ModelOutput.
        hidden = out["last_hidden_state"]
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels,
                                      vocab_size=self.config.vocab_size, **kwargs)
        result = CausalLMOutputWithPast(loss=loss, logits=logits,
                                        past_key_values=out.get("past_key_values"),
                                        hidden_states=out.get("hidden_states"),
                                        attentions=out.get("attentions"))
        return result if return_dict else result.to_tuple()


__all__ = ["SoftpickForCausalLM", "SoftpickModel", "SoftpickPreTrainedModel", "rope_cos_sin",
           "apply_rope"]
