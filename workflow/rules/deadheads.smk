# Dead heads and passkey retrieval: Figure 6, Tables 4 and 5.
#
#   results/{size}/{arm}/seed_{seed}/deadheads/{ckpt}.json        dead-head record of one export (ckpt: final | step_N)
#   results/{size}/{arm}/seed_{seed}/deadheads/masked_eval.json   Table 5: evaluations with the dead heads zeroed
#   results/{size}/{arm}/seed_{seed}/passkey.json                 passkey accuracy by prompt length
#
# Uses SIZES, SIZE_CFG, trained_arms(size) and keep_steps(size, arm) from common.smk;
# deadhead_passkey_targets() lists the table and figure targets for rule all.

rule dead_heads:
    input:
        model="results/{size}/{arm}/seed_{seed}/train/{ckpt}",
        manifest="results/data/tokens/manifest.json",
    output:
        ensure("results/{size}/{arm}/seed_{seed}/deadheads/{ckpt}.json", non_empty=True),
    params:
        cfg=DEADHEADS_CFG,
        device=config["device"],
    log:
        "logs/deadheads/{size}/{arm}/seed_{seed}/{ckpt}.log",
    benchmark:
        "benchmarks/deadheads/{size}/{arm}/seed_{seed}/{ckpt}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/dead_heads.py"


rule figure06_dead_heads:
    input:
        unpack(figure06_inputs),
    output:
        reported(multiext("results/figures/figure06_dead_heads", ".pdf", ".png"), "Figures"),
    params:
        labels={name: size["label"] for name, size in SIZE_CFG.items()},
        eps=DEADHEADS_CFG["eps"],
        title="Figure 6: % dead heads over training",
    log:
        "logs/report/figure06.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/dead_heads.py"


rule masked_eval:
    input:
        unpack(masked_eval_inputs),
    output:
        ensure("results/{size}/{arm}/seed_{seed}/deadheads/masked_eval.json", non_empty=True),
    params:
        cfg=DEADHEADS_CFG,
        eval=config["eval"],
        max_length=config["eval"]["max_length"] or config["train"]["seq_len"],
        device=config["device"],
    log:
        "logs/deadheads/{size}/{arm}/seed_{seed}/masked_eval.log",
    benchmark:
        "benchmarks/deadheads/{size}/{arm}/seed_{seed}/masked_eval.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/masked_eval.py"


rule table05_dead_head_masking:
    input:
        unpack(table05_inputs),
    output:
        multiext("results/tables/seed_{seed}/table05_dead_head_masking", ".csv", ".md", ".tex"),
    params:
        labels={name: size["label"] for name, size in SIZE_CFG.items()},
        cfg=DEADHEADS_CFG,
    log:
        "logs/report/seed_{seed}/table05.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/masked_eval.py"


rule passkey:
    input:
        model="results/{size}/{arm}/seed_{seed}/train/final",
    output:
        ensure("results/{size}/{arm}/seed_{seed}/passkey.json", non_empty=True),
    params:
        cfg=PASSKEY_CFG,
        train_seq_len=config["train"]["seq_len"],
        device=config["device"],
    log:
        "logs/passkey/{size}/{arm}/seed_{seed}.log",
    benchmark:
        "benchmarks/passkey/{size}/{arm}/seed_{seed}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/passkey.py"


rule table04_passkey:
    input:
        unpack(table04_inputs),
    output:
        multiext("results/tables/seed_{seed}/table04_passkey", ".csv", ".md", ".tex"),
    params:
        labels={name: size["label"] for name, size in SIZE_CFG.items()},
        train_seq_len=config["train"]["seq_len"],
        trials=PASSKEY_CFG["trials"],
    log:
        "logs/report/seed_{seed}/table04.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/passkey.py"
