# Evaluation stage: lm-eval benchmarks of exported models, unquantized and quantized
# -> Tables 1, 7, 8-13 and Figure 3.
#
#   results/data/eval_tasks/                        generated lm-eval tasks (eval.source embedded)
#   results/{size}/{arm}/seed_{seed}/eval/{quant}.json          one evaluation (quant: none | hqq2 | bnb4 | gptq4 ...)
#   results/tables/table{01,07,08..13}_*.{csv,md,tex}
#   results/figures/figure03_quantization.{pdf,png}
#
# Uses SIZES, SIZE_CFG, ARMS_BY_GROUP and trained_arms(size) from common.smk.
# Targets: eval_targets() (every evaluation JSON) and benchmark_report_targets().

rule make_eval_tasks:
    input:
        eval_set_files,
    output:
        directory(TASK_DIR),
    params:
        data_dir=config["data"]["eval_dir"],
        names=EVAL_CFG["tasks"]["embedded"],
    log:
        "logs/evaluate/make_eval_tasks.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/make_eval_tasks.py"


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        ensure("results/{size}/{arm}/seed_{seed}/eval/{quant}.json", non_empty=True),
    wildcard_constraints:
        quant="|".join(["none", *QUANTS]),
    params:
        eval=EVAL_CFG,
        quantization=QUANT_CFG,
        max_length=EVAL_CFG["max_length"] or config["train"]["seq_len"],
        device=config["device"],
    log:
        "logs/{size}/{arm}/seed_{seed}/eval/{quant}.log",
    benchmark:
        "benchmarks/{size}/{arm}/seed_{seed}/eval/{quant}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=lambda wc: 120 if config["device"] == "cuda" else 240,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/evaluate.py"


rule benchmark_tables:
    input:
        lambda wc: [eval_file(*run, wc.seed) for run in evaluations()],
    output:
        [f"results/tables/seed_{{seed}}/{stem}.{ext}" for stem in TABLE_STEMS for ext in ("csv", "md", "tex")],
    params:
        sizes=config["sizes"],
        runs=ARMS_BY_GROUP,
        methods=QUANT_METHODS_ON,
    log:
        "logs/report/seed_{seed}/benchmark_tables.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/benchmark_tables.py"


rule figure03_quantization:
    input:
        [eval_file(size, arm, q, seed) for size, arm, q in evaluations()
         if arm in ARMS_BY_GROUP["main_arms"] for seed in SEEDS],
    output:
        pdf="results/figures/figure03_quantization.pdf",
        png=report("results/figures/figure03_quantization.png", caption="../report/figure03.rst", category="Figures"),
    params:
        sizes=config["sizes"],
        methods=QUANT_METHODS_ON,
        arms=ARMS_BY_GROUP["main_arms"],
    log:
        "logs/report/figure03_quantization.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/figure03_quantization.py"
