# Report stage: training configuration table, training curves, comparison with the paper.


rule table06_training_config:
    input:
        manifest="results/data/tokens/manifest.json",
    output:
        reported(multiext("results/tables/table06_training_config", ".csv", ".md", ".tex"), "Tables"),
    params:
        sizes=config["sizes"],
        train={**config["train"], "seed": ", ".join(SEEDS)},
    log:
        "logs/report/table06.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/table06_training_config.py"


rule figure02_training_curves:
    input:
        unpack(curve_inputs(["softmax", "softpick"])),
    output:
        reported(multiext("results/figures/figure02_training_curves", ".pdf", ".png"), "Figures"),
    params:
        labels={s["name"]: s["label"] for s in config["sizes"]},
        title="Figure 2: training loss and gradient norm, softmax vs softpick",
    log:
        "logs/report/figure02.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/training_curves.py"


rule figure07_training_curves_variants:
    input:
        unpack(curve_inputs(["softmax", "softpick", "rectified", "scalable_softpick"])),
    output:
        reported(multiext("results/figures/figure07_training_curves_variants", ".pdf", ".png"), "Figures"),
    params:
        labels={s["name"]: s["label"] for s in config["sizes"]},
        title="Figure 7: training loss and gradient norm incl. rectified and scalable-softpick",
    log:
        "logs/report/figure07.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/training_curves.py"


rule paper_comparison_and_claims:
    input:
        unpack(scorecard_inputs),
        published="data/paper/published_values.csv",
    output:
        reported(multiext("results/tables/paper_comparison", ".csv", ".md"), "Verdicts"),
        reported(multiext("results/tables/claims", ".csv", ".md"), "Verdicts"),
    params:
        sizes=config["sizes"],
        rules=config["claims"],
        seeds=SEEDS,
    log:
        "logs/report/scorecard.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/scorecard.py"


rule html_report:
    input:
        tables=report_tables,
        figures=report_figures,
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        config=config,
        title=f"Softpick reproduction: {config['run_label']}",
    log:
        "logs/report/html.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/html_report.py"




rule combine_seeds:
    """One table of every seed (results/tables/seed_{seed}/) -> results/tables/, mean ± std.
    A script, not a `run:` block: Snakemake's local executor spawns a whole Snakemake process
    (imports, workflow parse) for each `run:` job, a script job starts one plain interpreter."""
    input:
        lambda wc: expand("results/tables/seed_{seed}/{table}.csv", seed=SEEDS, table=wc.table),
    output:
        reported(multiext("results/tables/{table}", ".csv", ".md", ".tex"), "Tables", caption="seed_table"),
    wildcard_constraints:
        table="|".join(PER_SEED_TABLES),
    params:
        seeds=SEEDS,
        caption=seed_table_caption,
    log:
        "logs/report/combine_seeds/{table}.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/combine_seeds.py"
