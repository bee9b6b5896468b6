# Data stage: the tokenizer and the token shards.


rule train_tokenizer:
    input:
        corpus_files,
    output:
        directory("results/data/tokenizer"),
    params:
        data=config["data"],
        tokenizer=config["tokenizer"],
    log:
        "logs/data/train_tokenizer.log",
    benchmark:
        "benchmarks/data/train_tokenizer.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule tokenize_shard:
    input:
        corpus=corpus_files,
        tokenizer="results/data/tokenizer",
    output:
        train="results/data/tokens/shards/{shard}/train.bin",
        val="results/data/tokens/shards/{shard}/val.bin",
        part="results/data/tokens/shards/{shard}/part.json",
    params:
        data=config["data"],
        shard=lambda wildcards: int(wildcards.shard),
        shards=config["data"]["shards"],
    log:
        "logs/data/tokenize_shard_{shard}.log",
    benchmark:
        "benchmarks/data/tokenize_shard_{shard}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=24 * 60,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/tokenize_corpus.py"


rule tokenize:
    input:
        parts=token_shard_parts,
    output:
        manifest="results/data/tokens/manifest.json",
    log:
        "logs/data/tokenize.log",
    localrule: True
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/tokenize_corpus.py"
