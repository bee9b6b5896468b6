"""The model: `SoftpickConfig`, `SoftpickForCausalLM`, size presets, the fla converter.

Importing this package registers `model_type = "softpick_llama"` with transformers'
`AutoConfig`, `AutoModel` and `AutoModelForCausalLM`, so a saved model directory loads with
`AutoModelForCausalLM.from_pretrained(path)` without `trust_remote_code`.
"""
from softpick_repro.model._lean_imports import import_transformers_lean

import_transformers_lean()  # before anything below imports transformers' cache and generation code

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402

from softpick_repro.model.configuration import SoftpickConfig  # noqa: E402
from softpick_repro.model.convert_fla import (convert_fla_config, convert_fla_state_dict,
                                              load_fla_checkpoint)
from softpick_repro.model.modeling import SoftpickForCausalLM, SoftpickModel
from softpick_repro.model.presets import PRESETS, build_config, count_parameters

AutoConfig.register(SoftpickConfig.model_type, SoftpickConfig, exist_ok=True)
AutoModel.register(SoftpickConfig, SoftpickModel, exist_ok=True)
AutoModelForCausalLM.register(SoftpickConfig, SoftpickForCausalLM, exist_ok=True)

__all__ = [
    "PRESETS",
    "SoftpickConfig",
    "SoftpickForCausalLM",
    "SoftpickModel",
    "build_config",
    "convert_fla_config",
    "convert_fla_state_dict",
    "count_parameters",
    "load_fla_checkpoint",
]
