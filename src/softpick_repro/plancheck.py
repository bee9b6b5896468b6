"""The plan check: every setting a job would reject, rejected when the workflow loads.

`check_plan(config)` runs on the merged, schema-valid config once, from
`workflow/rules/common.smk` right after `validate_config`, so `snakemake -n` fails in
seconds with one line naming the key instead of a job failing hours into a run. It calls the
functions the jobs themselves call (`build_config` per size and arm, `TrainConfig.validate`,
`quantize.check_request` on the model's real layers, `check_context` per length), on models
built on the meta device (no memory, no weights). Nothing here needs hardware: a plan for
`device: cuda` made on a machine without a GPU passes; the jobs check the device.

Each check is a small function of the config that raises `ConfigError("config error at
<key>: ...")`; `CHECKS` lists them in order. Add a new check by appending a function.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from softpick_repro import plan
from softpick_repro.config import ConfigError

# Vocabulary size of the plan's models when the tokenizer is not trained here (its size is
# only known once it is downloaded); no check below depends on it.
_PLACEHOLDER_VOCAB = 32000


def _error(key: str, message: str) -> ConfigError:
    return ConfigError(f"config error at {key}: {message}")


def _size_key(config: dict, size: str, field: str) -> str:
    index = plan.sizes(config).index(size)
    return f"sizes.{index}.{field} ({size})"


def _vocab_size(config: dict) -> int:
    tok = config["tokenizer"]
    return int(tok["vocab_size"]) if tok["kind"] == "bpe" else _PLACEHOLDER_VOCAB


def model_config(config: dict, size: str, arm: str):
    """The SoftpickConfig the pipeline builds for (size, arm), or an error naming the key."""
    from softpick_repro.model.presets import build_config

    preset = plan.size_cfg(config, size)["preset"]
    try:
        return build_config(preset, arm, _vocab_size(config))
    except ValueError as err:
        raise _error(_size_key(config, size, "preset"), str(err)) from None


def _meta_model(config: dict, size: str, arm: str):
    """The model of (size, arm) on the meta device: real module shapes, no storage."""
    import torch

    from softpick_repro.model import SoftpickForCausalLM

    with torch.device("meta"):
        return SoftpickForCausalLM(model_config(config, size, arm))


# ---- the checks ------------------------------------------------------------------------
def check_released(config: dict) -> None:
    """Released-model mode: listed sizes and arms are planned, none is a variant arm."""
    plan.check_released(config)


def check_model_configs(config: dict) -> None:
    """Every (size, arm) with a model has a valid model config (known preset, valid shape)."""
    for size, arm in plan.model_runs(config):
        model_config(config, size, arm)


# TrainConfig fields that come from a `sizes` entry or another section, not from `train`.
_SIZE_FIELDS = {"preset": "preset", "steps": "steps", "lr": "lr", "warmup_steps": "warmup_steps",
                "keep_steps": "keep_every", "activation_checkpointing": "activation_checkpointing"}


def _train_field_key(config: dict, size: str, field: str) -> str:
    if field in _SIZE_FIELDS:
        return _size_key(config, size, _SIZE_FIELDS[field])
    if field == "stop_at_step":
        return "runs.variant_fraction"
    if field == "device":
        return "device"
    return f"train.{field}"


def check_train_configs(config: dict) -> None:
    """Every training run's TrainConfig passes the trainer's own validation."""
    from softpick_repro.train.config import TrainConfig, TrainConfigError

    for size, arm in plan.training_runs(config):
        params = plan.train_params(config, size, arm)
        try:
            TrainConfig.from_dict(params).validate(int(params["processes"]))
        except TrainConfigError as err:
            raise _error(_train_field_key(config, size, err.field), f"{size}/{arm}: {err}") from None


def _planned_lengths(config: dict, size: str) -> list[tuple[str, int]]:
    """(key, tokens) of every sequence a job at `size` feeds a model."""
    from softpick_repro.analysis.passkey import target_lengths

    seq_len = int(config["train"]["seq_len"])
    lengths = [("train.seq_len", seq_len)]
    if any(s == size for s, _, _ in plan.evaluations(config)):
        lengths.append(("eval.max_length", int(config["eval"]["max_length"]) or seq_len))
        if any(q.startswith("gptq") for q in plan.quants(config)):
            lengths.append(("quantization.calibration.length",
                            int(config["quantization"]["calibration"]["length"])))
    if any(s == size for s, _, _ in plan.attention_metric_runs(config)):
        metrics = config["metrics"]
        lengths.append(("metrics.seq_len", int(metrics["seq_len"])))
        lengths += [("metrics.length_sweep", int(n)) for n in metrics["length_sweep"]]
    if any(s == size for s, _ in plan.deadheads_runs(config)):
        lengths.append(("dead_heads.seq_len", int(config["dead_heads"]["seq_len"])))
    if any(s == size for s, _ in plan.passkey_runs(config)):
        fractions = config["passkey"]["fractions"]
        lengths += [("passkey.fractions", n) for n in target_lengths(seq_len, fractions)]
    return lengths


def check_context_lengths(config: dict) -> None:
    """Every planned sequence fits the positions of the model it is fed to."""
    from softpick_repro.model.presets import check_context

    for size in plan.sizes(config):
        model_cfg = model_config(config, size, plan.model_arms(config, size)[0])
        for key, length in _planned_lengths(config, size):
            try:
                check_context(model_cfg, length, key)
            except ValueError as err:
                raise _error(key, f"{err} at size {size} (preset {plan.size_cfg(config, size)['preset']})"
                             ) from None


def check_calibration_length(config: dict) -> None:
    """GPTQ calibrates on windows of at most the trained context (the schema's rule)."""
    if not any(q.startswith("gptq") for q in plan.quants(config)):
        return
    length = int(config["quantization"]["calibration"]["length"])
    seq_len = int(config["train"]["seq_len"])
    if length > seq_len:
        raise _error("quantization.calibration.length",
                     f"{length} tokens is longer than the trained context train.seq_len={seq_len}")


def check_quantization(config: dict) -> None:
    """Every planned quantization fits the real layers of every quantized model."""
    from softpick_repro.evaluate.quantize import QuantizationError, check_request, parse_quant, target_linears

    quant_cfg = config["quantization"]
    runs = sorted({(size, arm) for size, arm, quant in plan.evaluations(config) if quant != "none"})
    for size, arm in runs:
        linears = target_linears(_meta_model(config, size, arm))
        for name in plan.quants(config):  # method and width were checked by quant_names
            spec = parse_quant(name)
            try:
                # the schema's enums cover the quant type and the pipeline: what remains to
                # fail here is the group size against the layer widths or bnb's block sizes
                check_request(linears, spec.method, spec.bits, group_size=quant_cfg["group_size"],
                              bnb_4bit_quant_type=quant_cfg["bnb_4bit_quant_type"],
                              gptq_pipeline=quant_cfg["gptq_pipeline"])
            except QuantizationError as err:
                raise _error("quantization.group_size", f"{name} of {size}/{arm}: {err}") from None


def check_remote_inputs(config: dict) -> None:
    """The remote inputs given as local paths (a corpus's data_files, a tokenizer directory, a
    staged lm-eval dataset, a released model) exist and hold what their loaders read; with
    HF_HUB_OFFLINE=1, every hub id the config names is in the Hugging Face cache. Nothing is
    downloaded and the hub is never asked (`python -m softpick_repro.stage_in --check` asks it)."""
    from softpick_repro.remote_checks import hub_offline, remote_input_problems

    problems = remote_input_problems(config, reach_hub=hub_offline())
    if problems:
        raise ConfigError("remote input error: " + "; ".join(problems))


CHECKS: list[Callable[[dict], None]] = [
    check_released,
    check_model_configs,
    check_train_configs,
    check_context_lengths,
    check_calibration_length,
    check_quantization,
    check_remote_inputs,  # last: a setting wrong in itself is named before a missing input
]


def check_plan(config: dict) -> None:
    """Run every check of `CHECKS` on a schema-valid config; the first failure raises."""
    for check in CHECKS:
        check(config)


def check_working_directory(basedir: str | Path, cwd: str | Path) -> None:
    """The workflow's relative paths (config/, data/, results/) resolve against the working
    directory, so Snakemake must run in the repository root."""
    basedir, cwd = Path(basedir).resolve(), Path(cwd).resolve()
    if basedir != cwd:
        raise ConfigError(f"snakemake runs in {cwd}, but this workflow's paths (config/config.yaml, "
                          f"data/, results/) are relative to its repository root {basedir}: "
                          f"cd {basedir} (or pass --directory {basedir}) and rerun")


__all__ = ["CHECKS", "check_plan", "check_working_directory", "model_config"]
