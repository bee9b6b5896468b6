"""Snakemake adapter: one exported model -> its attention maps on 3 texts (metrics.map_text).

Rule contract: input.model (HF directory), input.manifest (map_text val_shard only);
params.metrics, params.device; output[0] the safetensors file (Figures 1, 5, 8-19).
"""
from softpick_repro.analysis.attention_run import run_attention_maps
from softpick_repro.logs import log_to

with log_to(snakemake.log[0]):
    wc = snakemake.wildcards
    out = run_attention_maps(snakemake.input.model, snakemake.output[0], snakemake.params.metrics,
                             device=snakemake.params.device, manifest=snakemake.input.get("manifest"),
                             meta={"size": wc.size, "arm": wc.arm, "ckpt": wc.ckpt})
    print(f"wrote {out}")
