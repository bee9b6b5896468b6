"""One evaluation job: exported model directory -> (quantize) -> lm-eval -> result record.

The record is `lm_eval_runner.evaluate_model`'s dict plus `size`, `arm`, `quant`,
`model_dir`, `quantization` (the quantizer's record, or null for `none`) and `provenance`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from softpick_repro.evaluate.lm_eval_runner import evaluate_model, resolve_device
from softpick_repro.evaluate.quantize import calibration_windows, parse_quant, quantize_model
from softpick_repro.evaluate.tasks import load_task_specs, paper_task_specs
from softpick_repro.io import provenance
from softpick_repro.model.presets import check_context

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def eval_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' = bfloat16 on CUDA, float32 on CPU (CPU half-precision matmuls are slow)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown eval dtype {name!r}; expected auto or one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def configured_tasks(eval_cfg: dict, task_dir: str | Path | None):
    """TaskSpecs of the config's `eval` section: embedded sets from `task_dir`, or lm-eval's."""
    if eval_cfg["source"] == "embedded":
        if task_dir is None:
            raise ValueError("eval.source is embedded but no task directory was given")
        return load_task_specs(task_dir, eval_cfg["tasks"]["embedded"])
    return paper_task_specs(eval_cfg["tasks"]["lm_eval"])


def dataset_overrides(eval_cfg: dict) -> dict | None:
    """lm-eval task -> local dataset location (`eval.lm_eval_datasets`), for lm-eval's tasks."""
    if eval_cfg["source"] != "lm_eval":
        return None
    return eval_cfg.get("lm_eval_datasets") or None


def evaluate_export(model_dir: str | Path, quant: str, eval_cfg: dict, quant_cfg: dict, *,
                    task_dir: str | Path | None = None, tokens_dir: str | Path | None = None,
                    device: str = "auto", max_length: int | None = None,
                    meta: dict | None = None) -> dict:
    """Load `model_dir` (a `train.export` directory with its tokenizer), quantize it as
    `quant` says, evaluate on the configured tasks; returns the JSON-ready record.

    GPTQ calibrates on windows of `tokens_dir`'s train shard (quant_cfg's calibration keys).
    """
    from transformers import AutoTokenizer

    from softpick_repro.model.llama_export import load_exported

    spec = parse_quant(quant)
    tasks = configured_tasks(eval_cfg, task_dir)
    dev = resolve_device(device)
    dtype = eval_dtype(eval_cfg["dtype"], dev)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    model = load_exported(model_dir, dtype=dtype)
    model.to(dev).eval()
    if max_length:  # lm-eval would silently run past the model's positions
        check_context(model.config, max_length, "eval.max_length")
    qrecord = None
    if spec.method is not None:
        calib_ids = None
        if spec.method == "gptq":
            from softpick_repro.tokenize import load_tokens

            if tokens_dir is None:
                raise ValueError("GPTQ calibration needs the training token shard (tokens_dir)")
            cal = quant_cfg["calibration"]
            check_context(model.config, cal["length"], "quantization.calibration.length")
            calib_ids = calibration_windows(load_tokens(tokens_dir, "train"), cal["samples"],
                                            cal["length"], cal["seed"])
        qrecord = quantize_model(
            model, spec.method, spec.bits, group_size=quant_cfg["group_size"],
            calib_ids=calib_ids, tokenizer=tokenizer, device=dev,
            bnb_4bit_quant_type=quant_cfg["bnb_4bit_quant_type"],
            bnb_int8_threshold=quant_cfg["bnb_int8_threshold"],
            gptq_pipeline=quant_cfg["gptq_pipeline"],
            gptq_dampening_frac=quant_cfg["gptq_dampening_frac"])
    result = evaluate_model(
        model, tokenizer, tasks, limit=eval_cfg["limit"] or None,
        batch_size=eval_cfg["batch_size"], device=str(dev), task_dir=task_dir,
        max_length=max_length, add_bos=eval_cfg["add_bos"],
        bootstrap_iters=eval_cfg["bootstrap_iters"],
        dataset_overrides=dataset_overrides(eval_cfg))
    cfg = {"eval": eval_cfg, "quantization": quant_cfg if spec.method else None}
    return {**(meta or {}), "quant": spec.name, "model_dir": str(model_dir),
            "quantization": qrecord, **result, "provenance": provenance(cfg)}
