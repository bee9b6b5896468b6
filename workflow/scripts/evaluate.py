"""Snakemake adapter: exported model -> (quantize) -> lm-eval -> results/{size}/{arm}/seed_{seed}/eval/{quant}.json.

Inputs: model (the export directory, tokenizer inside), tasks (the generated task directory;
absent when eval.source is lm_eval), tokens (the token manifest; GPTQ only: calibration).
Params: eval, quantization (config sections), max_length (resolved), device.
"""
from pathlib import Path

import torch

from softpick_repro.evaluate.run import evaluate_export
from softpick_repro.io import dump_json
from softpick_repro.logs import log_to

torch.set_num_threads(max(1, snakemake.threads))  # share the cores with parallel jobs

with log_to(snakemake.log[0]):
    wc = snakemake.wildcards
    tokens = snakemake.input.get("tokens")
    record = evaluate_export(
        snakemake.input.model, wc.quant, snakemake.params.eval, snakemake.params.quantization,
        task_dir=snakemake.input.get("tasks"),
        tokens_dir=str(Path(tokens).parent) if tokens else None,
        device=snakemake.params.device, max_length=snakemake.params.max_length,
        meta={"size": wc.size, "arm": wc.arm})
    dump_json(record, snakemake.output[0])
