"""Snakemake adapter for two rules (dispatch on the rule name):

- tokenize_shard: shard params.shard of params.shards of the configured corpus -> that
  shard's train.bin, val.bin and part.json (written last);
- tokenize: every shard's part.json -> manifest.json (the gather).
"""
from pathlib import Path

from softpick_repro.logs import log_to
from softpick_repro.tokenize import configured_documents, gather_manifest, tokenize_shard

with log_to(snakemake.log[0]):
    if snakemake.rule == "tokenize":
        manifest = gather_manifest(snakemake.input.parts, Path(snakemake.output.manifest).parent)
        print(f"gathered {len(manifest['shards'])} shard(s): {manifest['tokens']} tokens")
    else:
        data_cfg = snakemake.params.data
        shard, shards = snakemake.params.shard, snakemake.params.shards
        docs, source_hash = configured_documents(data_cfg, shard, shards)
        max_tokens = -(-data_cfg["fineweb"]["max_tokens"] // shards)  # ceil: the shards' share
        tokenize_shard(docs, snakemake.input.tokenizer, Path(snakemake.output.part).parent,
                       val_fraction=data_cfg["val_fraction"], source_hash=source_hash,
                       shard=shard, shards=shards, threads=snakemake.threads,
                       max_tokens=max_tokens)
