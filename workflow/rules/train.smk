# Training stage: pretrain one (size, arm) run, then export Hugging Face directories.
# Resumable state lives in checkpoints/{size}/{arm}/ (not a declared output, so Snakemake's
# clean-up of a failed job keeps it); rerun with --rerun-incomplete to resume.


rule pretrain:
    input:
        manifest="results/data/tokens/manifest.json",
        train="results/data/tokens/train.bin",
        val="results/data/tokens/val.bin",
        tokenizer="results/data/tokenizer",
    output:
        metrics="results/{size}/{arm}/train/metrics.csv",
        summary="results/{size}/{arm}/train/summary.json",
        weights=directory("results/{size}/{arm}/train/weights"),
    params:
        train=train_params,
        checkpoint_dir="checkpoints/{size}/{arm}",
    log:
        "logs/train/{size}/{arm}.log",
    benchmark:
        "benchmarks/train/{size}/{arm}.tsv"
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
        weights="results/{size}/{arm}/train/weights",
        tokenizer="results/data/tokenizer",
        metrics="results/{size}/{arm}/train/metrics.csv",
    output:
        model=directory("results/{size}/{arm}/train/{ckpt}"),
    params:
        train=train_params,
    log:
        "logs/export/{size}/{arm}/{ckpt}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/export_hf.py"
