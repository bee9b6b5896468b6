"""`load_exported`: the one way an exported model directory is loaded for evaluation or analysis.

Every `*.safetensors` file of the directory is checked against the content digest in its
metadata first (`softpick_repro.integrity.verify_model_dir`), so a corrupt or truncated
export stops the job with the file named instead of being evaluated. Nothing is unpickled
and no code from the directory runs (safetensors only, no trust_remote_code).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from softpick_repro.integrity import verify_model_dir


def load_exported(model_dir: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """The verified model of an export directory (a `train.export` or `import_released` one)."""
    from transformers import AutoModelForCausalLM

    import softpick_repro.model  # noqa: F401  registers the architecture with the Auto classes

    model_dir = Path(model_dir)
    verify_model_dir(model_dir)
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, trust_remote_code=False,
                                                use_safetensors=True)


__all__ = ["load_exported"]
