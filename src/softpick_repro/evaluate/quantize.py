"""Post-training weight quantization of a loaded model: HQQ, bitsandbytes (NF4 / LLM.int8), GPTQ.

Scope (all methods): every `nn.Linear` inside the decoder layers (q/k/v/o and the gate/up/down
projections) is quantized; the input embedding and `lm_head` stay in full precision (as in
transformers' bitsandbytes integration, which skips the output embedding, and the usual GPTQ
recipes, which ignore lm_head). Norm weights and arm parameters (per-head scales, sink
logits) are not matrices and stay as they are. Weights only: activations stay in the model
dtype.

Methods and what they call:
- `hqq`: hqq's own API (`hqq.core.quantize.HQQLinear` with `BaseQuantizeConfig(nbits,
  group_size)`, hqq's defaults otherwise: axis 1, zero/scale unquantized), replacing each
  Linear; compute dtype = the model dtype; calibration-free. Runs on CPU and CUDA.
- `bnb`: bitsandbytes `Linear4bit` (4 bit, quant type `nf4` by default, block size =
  group_size, no double quantization) or `Linear8bitLt` (8 bit, LLM.int8 with the outlier
  threshold, 6.0 by default as in transformers). bitsandbytes 0.50 runs both on CPU too.
  On CUDA, LLM.int8 casts bfloat16 inputs to float16 for its matmul (bitsandbytes' own rule).
- `gptq`: llmcompressor's `GPTQModifier` through `oneshot`, symmetric integer weights with
  per-group scales (group_size), calibrated on token windows of the TRAINING data (never the
  evaluation sets). The result is "fake-quantized": weights hold the dequantized values of
  the quantized grid, plus the scale/zero-point parameters. Pipeline `sequential` (layer by
  layer, quantized outputs feed the next layer, the GPTQ paper's procedure) or `basic`
  (Hessians from one unquantized pass).

Quantization names are the `{quant}` wildcard: `none` or method + bits (`hqq2`, `bnb4`,
`gptq8`); `parse_quant` validates them against `SUPPORTED_BITS`.
"""
from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# What each library supports and this module has tested on CPU (tests/test_quantize.py).
# hqq also has 5/6 bit (and a 1.58-bit mode not expressible as a quant name).
SUPPORTED_BITS: dict[str, tuple[int, ...]] = {
    "hqq": (1, 2, 3, 4, 5, 6, 8),
    "bnb": (4, 8),
    "gptq": (2, 3, 4, 8),
}
GPTQ_PIPELINES = ("sequential", "basic")
BNB_BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)  # bitsandbytes' 4-bit block sizes
# Functions of softpick_repro.model.modeling that llmcompressor's tracer must treat as opaque
# (they branch on devices/masks, which symbolic tracing cannot follow).
_GPTQ_TRACING_IGNORE = ("rope_cos_sin", "_key_padding_mask")


class QuantizationError(ValueError):
    """A quantization request that cannot be honoured (bad name, width, group size, device)."""


def _supported_list() -> str:
    return "; ".join(f"{m}: {', '.join(map(str, b))}" for m, b in SUPPORTED_BITS.items())


@dataclass(frozen=True)
class QuantSpec:
    method: str | None  # None = unquantized
    bits: int | None

    @property
    def name(self) -> str:
        return "none" if self.method is None else f"{self.method}{self.bits}"


def check_supported(method: str, bits: int) -> None:
    if method not in SUPPORTED_BITS:
        raise QuantizationError(f"unknown quantization method {method!r}; supported: "
                                f"{_supported_list()}")
    if bits not in SUPPORTED_BITS[method]:
        raise QuantizationError(f"{method} does not support {bits}-bit weights; supported: "
                                f"{_supported_list()}")


def parse_quant(name: str) -> QuantSpec:
    """'none' -> QuantSpec(None, None); 'hqq2' -> QuantSpec('hqq', 2); unsupported -> error."""
    if name == "none":
        return QuantSpec(None, None)
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    if not match:
        raise QuantizationError(f"bad quantization name {name!r}: expected 'none' or method+bits "
                                f"like 'hqq2'; supported: {_supported_list()}")
    method, bits = match.group(1), int(match.group(2))
    check_supported(method, bits)
    return QuantSpec(method, bits)


def quant_names(methods: dict[str, Sequence[int]]) -> list[str]:
    """['hqq2', 'hqq3', 'bnb4', ...] for a config mapping method -> bit widths (validated)."""
    names = []
    for method, widths in methods.items():
        for bits in widths:
            check_supported(method, int(bits))
            names.append(f"{method}{int(bits)}")
    return names


def target_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers to quantize: all but the output head (embeddings are not Linear)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = {name: mod for name, mod in model.named_modules()
             if isinstance(mod, nn.Linear) and mod is not head}
    if not found:
        raise QuantizationError("the model has no nn.Linear layers to quantize "
                                "(already quantized?)")
    return found


def _check_group_size(linears: dict[str, nn.Linear], group_size: int) -> None:
    if group_size <= 0 or group_size % 8:
        raise QuantizationError(f"group_size must be a positive multiple of 8, got {group_size}")
    bad = [f"{n} (in_features {m.in_features})" for n, m in linears.items()
           if m.in_features % group_size]
    if bad:
        raise QuantizationError(f"group_size {group_size} does not divide the input width of "
                                f"{len(bad)} layer(s): {', '.join(bad[:4])}")


def check_request(linears: dict[str, nn.Module], method: str, bits: int, *, group_size: int,
                  bnb_4bit_quant_type: str = "nf4", gptq_pipeline: str = "sequential") -> None:
    """Everything about a quantization request that can be checked without running it:
    method and width, group size against every layer's input width, bnb's block sizes and
    quant types, the GPTQ pipeline. `linears` may live on the meta device (the plan check
    builds the model there)."""
    check_supported(method, bits)
    if method != "bnb" or bits == 4:
        _check_group_size(linears, group_size)
    if method == "bnb" and bits == 4:
        if bnb_4bit_quant_type not in ("nf4", "fp4"):
            raise QuantizationError(f"bnb 4-bit quant type must be nf4 or fp4, got "
                                    f"{bnb_4bit_quant_type!r}")
        if group_size not in BNB_BLOCKSIZES:
            raise QuantizationError(f"bnb 4-bit block size (group_size) must be one of "
                                    f"{BNB_BLOCKSIZES}, got {group_size}")
    if method == "gptq" and gptq_pipeline not in GPTQ_PIPELINES:
        raise QuantizationError(f"unknown GPTQ pipeline {gptq_pipeline!r}; expected one of {GPTQ_PIPELINES}")


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(p for p in model.parameters() if p.is_floating_point())
    return param.device, param.dtype


# ---------------------------------------------------------------------------------------------
# HQQ


def _quantize_hqq(model, bits, group_size, device, dtype) -> dict:
    from softpick_repro.model._lean_imports import import_hqq

    hqq_quantize = import_hqq()  # also what transformers' own hqq import would have set up
    BaseQuantizeConfig, HQQLinear = hqq_quantize.BaseQuantizeConfig, hqq_quantize.HQQLinear

    cfg = BaseQuantizeConfig(nbits=bits, group_size=group_size)
    linears = target_linears(model)
    for name, lin in linears.items():
        lin.requires_grad_(False)
        _set_module(model, name, HQQLinear(lin, cfg, compute_dtype=dtype, device=str(device),
                                           del_orig=True))
    return {"library": "hqq", "library_version": metadata.version("hqq"), "axis": 1,
            "n_quantized": len(linears)}


# ---------------------------------------------------------------------------------------------
# bitsandbytes


def _quantize_bnb(model, bits, group_size, device, dtype, quant_type, int8_threshold) -> dict:
    import bitsandbytes as bnb

    linears = target_linears(model)
    for name, lin in linears.items():
        weight = lin.weight.data
        if bits == 4:
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    compute_dtype=dtype, compress_statistics=False,
                                    quant_type=quant_type)
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, blocksize=group_size,
                                           compress_statistics=False, quant_type=quant_type,
                                           module=new)
        else:
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features,
                                      bias=lin.bias is not None, has_fp16_weights=False,
                                      threshold=int8_threshold)
            new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data, requires_grad=False)
        # bitsandbytes quantizes the weight when the module is moved to a device.
        _set_module(model, name, new.to(device))
    extra = ({"quant_type": quant_type, "blocksize": group_size, "double_quant": False}
             if bits == 4 else {"llm_int8_threshold": int8_threshold})
    return {"library": "bitsandbytes", "library_version": metadata.version("bitsandbytes"),
            "n_quantized": len(linears), **extra}


# ---------------------------------------------------------------------------------------------
# GPTQ


def calibration_windows(tokens: np.ndarray, samples: int, length: int, seed: int) -> list[list[int]]:
    """`samples` windows of `length` token ids at seeded random offsets of a training shard.

    Windows are cut like the trainer's packed sequences (they may start mid-document and span
    the BOS between documents).
    """
    if samples <= 0 or length <= 0:
        raise ValueError(f"calibration needs samples > 0 and length > 0, got {samples}, {length}")
    if len(tokens) < length:
        raise ValueError(f"the calibration shard holds {len(tokens)} tokens, fewer than one "
                         f"window of {length}")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.integers(0, len(tokens) - length + 1, size=samples))
    return [np.asarray(tokens[s:s + length], dtype=np.int64).tolist() for s in starts]


def _texts_to_ids(texts: Sequence[str], tokenizer, length: int) -> list[list[int]]:
    bos = tokenizer.bos_token_id
    out = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        ids = ([bos] if bos is not None else []) + ids
        out.append(ids[:length])
    return [ids for ids in out if len(ids) > 1]


def _quantize_gptq(model, bits, group_size, tokenizer, calib_ids, pipeline, dampening_frac) -> dict:
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.args import DatasetArguments
    from llmcompressor.modifiers.quantization import GPTQModifier

    if pipeline not in GPTQ_PIPELINES:
        raise QuantizationError(f"unknown GPTQ pipeline {pipeline!r}; expected one of {GPTQ_PIPELINES}")
    if not calib_ids:
        raise QuantizationError("GPTQ needs calibration data (calib_ids or calib_texts)")
    if tokenizer is None:
        raise QuantizationError("GPTQ needs the tokenizer (llmcompressor's oneshot requires one)")
    head_name = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
    recipe = GPTQModifier(
        ignore=[head_name], dampening_frac=dampening_frac,
        config_groups={"group_0": {"targets": ["Linear"], "weights": {
            "num_bits": bits, "type": "int", "symmetric": True, "strategy": "group",
            "group_size": group_size}}})
    length = max(len(ids) for ids in calib_ids)
    data = Dataset.from_dict({"input_ids": [list(ids) for ids in calib_ids],
                              "attention_mask": [[1] * len(ids) for ids in calib_ids]})
    ignore = list(DatasetArguments().tracing_ignore) + list(_GPTQ_TRACING_IGNORE)
    # oneshot re-reads the model's config from config.name_or_path; a model built in memory
    # has none, so point it at a temporary copy of the config for the call.
    saved_path = getattr(model.config, "_name_or_path", "")
    with tempfile.TemporaryDirectory() as tmp:
        if not (saved_path and (Path(saved_path) / "config.json").is_file()):
            model.config.save_pretrained(tmp)
            model.config._name_or_path = tmp
        try:
            oneshot(model=model, dataset=data, recipe=recipe, processor=tokenizer,
                    num_calibration_samples=len(calib_ids), max_seq_length=length,
                    shuffle_calibration_samples=False, pipeline=pipeline,
                    tracing_ignore=ignore)
        finally:
            model.config._name_or_path = saved_path
    n_done = sum(1 for m in model.modules() if hasattr(m, "weight_scale"))
    if n_done == 0:
        raise RuntimeError("GPTQ finished but no layer carries quantization parameters")
    return {"library": "llmcompressor", "library_version": metadata.version("llmcompressor"),
            "compressed_tensors_version": metadata.version("compressed-tensors"),
            "n_quantized": n_done, "pipeline": pipeline, "symmetric": True,
            "dampening_frac": dampening_frac, "calibration_samples": len(calib_ids),
            "calibration_length": length}


# ---------------------------------------------------------------------------------------------


def quantize_model(model: nn.Module, method: str, bits: int, *, group_size: int = 64,
                   calib_ids: Sequence[Sequence[int]] | None = None,
                   calib_texts: Sequence[str] | None = None, tokenizer=None,
                   calib_length: int = 512, device: str | torch.device | None = None,
                   bnb_4bit_quant_type: str = "nf4", bnb_int8_threshold: float = 6.0,
                   gptq_pipeline: str = "sequential", gptq_dampening_frac: float = 0.01) -> dict:
    """Quantize `model` in place (see the module docstring); returns a JSON-ready record.

    `device`: where the quantized model lives (default: where the model is). GPTQ takes its
    calibration from `calib_ids` (token id windows, see `calibration_windows`) or, failing
    that, `calib_texts` (each tokenized with BOS first, cut to `calib_length`).
    """
    linears = target_linears(model)
    check_request(linears, method, bits, group_size=group_size,
                  bnb_4bit_quant_type=bnb_4bit_quant_type, gptq_pipeline=gptq_pipeline)
    dev = torch.device(device) if device is not None else _model_device_dtype(model)[0]
    if method == "bnb" and dev.type not in ("cpu", "cuda"):
        raise QuantizationError(f"bitsandbytes runs on cpu or cuda here, not {dev}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QuantizationError(f"device {dev} requested but CUDA is not available")
    model.to(dev)
    model.eval()
    dtype = _model_device_dtype(model)[1]
    start = time.perf_counter()
    with torch.no_grad():
        if method == "hqq":
            info = _quantize_hqq(model, bits, group_size, dev, dtype)
        elif method == "bnb":
            info = _quantize_bnb(model, bits, group_size, dev, dtype, bnb_4bit_quant_type,
                                 bnb_int8_threshold)
        else:
            if calib_ids is None and calib_texts is not None:
                calib_ids = _texts_to_ids(calib_texts, tokenizer, calib_length)
            info = _quantize_gptq(model, bits, group_size, tokenizer, calib_ids, gptq_pipeline,
                                  gptq_dampening_frac)
    # Tells the evaluator not to move the model: quantized layers are placed already.
    model._softpick_quantized = True
    record = {"method": method, "bits": bits, "name": f"{method}{bits}",
              "group_size": None if method == "bnb" and bits == 8 else group_size,
              "device": str(dev), "compute_dtype": str(dtype).removeprefix("torch."),
              "unquantized": ["embed_tokens", "lm_head"],
              "wall_time_s": time.perf_counter() - start, **info}
    log.info("quantized %d linear layers with %s in %.1f s", record["n_quantized"], record["name"],
             record["wall_time_s"])
    return record
