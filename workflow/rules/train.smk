# Training stage: pretrain one (size, arm) run, then export Hugging Face directories.
# Resumable state lives in checkpoints/{size}/{arm}/seed_{seed}/{key}/ (not a declared output, so Snakemake's
# clean-up of a failed job keeps it); rerun with --rerun-incomplete to resume. The key hashes
# the settings that decide the weights (softpick_repro.train.rundirs): a changed setting
# trains afresh under a new key and the previous run stays under its own.


rule pretrain:
    input:
        manifest="results/data/tokens/manifest.json",
        tokenizer="results/data/tokenizer",
    output:
        metrics="results/{size}/{arm}/seed_{seed}/train/metrics.csv",
        summary="results/{size}/{arm}/seed_{seed}/train/summary.json",
        weights=directory("results/{size}/{arm}/seed_{seed}/train/weights"),
    params:
        train=train_params,
        checkpoint_dir=lambda wc: run_checkpoint_dir(f"checkpoints/{wc.size}/{wc.arm}/seed_{wc.seed}", train_params(wc)),
    log:
        "logs/train/{size}/{arm}/seed_{seed}.log",
    benchmark:
        "benchmarks/train/{size}/{arm}/seed_{seed}.tsv"
    threads: config["train"]["threads"]
    resources:
        mem_mb=lambda wc, threads: 4000 + 2000 * threads,
        runtime=lambda wc: 60 if config["device"] == "cpu" else 72 * 60,
        gpu=train_gpus,
        **multinode_resources(config["train"]),
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/pretrain.py"


rule export_hf:
    input:
        weights="results/{size}/{arm}/seed_{seed}/train/weights",
        tokenizer="results/data/tokenizer",
        metrics="results/{size}/{arm}/seed_{seed}/train/metrics.csv",
    output:
        model=directory("results/{size}/{arm}/seed_{seed}/train/{ckpt}"),
    params:
        train=train_params,
    log:
        "logs/export/{size}/{arm}/seed_{seed}/{ckpt}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/export_hf.py"
