# Analysis stage: attention metrics and maps -> Tables 2 and 3, Figures 1, 4, 5 and 8-19.
#
#   results/{size}/{arm}/seed_{seed}/metrics/attention_{ckpt}.json               metrics (ckpt: final | step_N)
#   results/{size}/{arm}/seed_{seed}/metrics/attention_maps_{ckpt}.safetensors   maps on 3 texts (metrics.map_text)
#
# Uses SIZES, ARMS_BY_GROUP and variant_step(size) from common.smk. Figures 8-19: for the
# smallest size 8-13, for the second 14-19; within a size text-major, softmax before
# softpick (8 = text 1 softmax, 9 = text 1 softpick, 10 = text 2 softmax, ...).

rule attention_metrics:
    input:
        unpack(attention_metric_inputs),
    output:
        ensure("results/{size}/{arm}/seed_{seed}/metrics/attention_{ckpt}.json", non_empty=True),
    params:
        metrics=METRICS_CFG,
        device=config["device"],
    log:
        "logs/analyze/{size}/{arm}/seed_{seed}/attention_{ckpt}.log",
    benchmark:
        "benchmarks/analyze/{size}/{arm}/seed_{seed}/attention_{ckpt}.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_metrics.py"


rule attention_maps:
    input:
        unpack(attention_map_inputs),
    output:
        ensure("results/{size}/{arm}/seed_{seed}/metrics/attention_maps_{ckpt}.safetensors", non_empty=True),
    params:
        metrics=METRICS_CFG,
        device=config["device"],
    log:
        "logs/analyze/{size}/{arm}/seed_{seed}/attention_maps_{ckpt}.log",
    threads: 1
    resources:
        mem_mb=16000,
        runtime=30,
        gpu=job_gpus,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_maps.py"


rule table02_attention_metrics:
    input:
        lambda wc: list(table2_inputs(wc.seed).values()),
    output:
        multiext("results/tables/seed_{seed}/table02_attention_metrics", ".csv", ".md", ".tex"),
    params:
        table=2,
        columns=[[SIZE_LABELS[s], a] for s, a in table2_inputs()],
    log:
        "logs/analyze/seed_{seed}/table02.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_tables.py"


rule table03_attention_variants:
    input:
        lambda wc: list(table3_inputs(wc.seed).values()),
    output:
        multiext("results/tables/seed_{seed}/table03_attention_variants", ".csv", ".md", ".tex"),
    params:
        table=3,
        columns=list(table3_inputs()),
        size_label=SIZE_LABELS[SIZES[0]],
        step=variant_step(SIZES[0]),
        fraction=ARMS_BY_GROUP["variant_fraction"],
    log:
        "logs/analyze/seed_{seed}/table03.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_tables.py"


rule figure01_attention_sink:
    input:
        maps=[map_file(SIZES[0], arm) for arm in MAP_ARMS],
        metrics=[f"{run_dir(SIZES[0], arm, FIRST_SEED)}/metrics/attention_final.json" for arm in MAP_ARMS],
    output:
        reported(multiext("results/figures/figure01_attention_sink", ".pdf", ".png"), "Figures"),
    params:
        figure=1,
        arms=MAP_ARMS,
        size_label=SIZE_LABELS[SIZES[0]],
        figures=METRICS_CFG["figures"],
        sink_eps=max(METRICS_CFG["sink_thresholds"]),
    log:
        "logs/analyze/figure01.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_figures.py"


rule figure04_activation_boxplots:
    input:
        metrics=[f"{run_dir(SIZES[0], arm, FIRST_SEED)}/metrics/attention_final.json" for arm in MAP_ARMS],
    output:
        reported(multiext("results/figures/figure04_activation_boxplots", ".pdf", ".png"), "Figures"),
    params:
        figure=4,
        arms=MAP_ARMS,
        size_label=SIZE_LABELS[SIZES[0]],
        figures=METRICS_CFG["figures"],
    log:
        "logs/analyze/figure04.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_figures.py"


rule figure05_attention_heads:
    input:
        maps=[map_file(SIZES[0], arm) for arm in MAP_ARMS],
    output:
        reported(multiext("results/figures/figure05_attention_heads", ".pdf", ".png"), "Figures"),
    params:
        figure=5,
        arms=MAP_ARMS,
        size_label=SIZE_LABELS[SIZES[0]],
        figures=METRICS_CFG["figures"],
    log:
        "logs/analyze/figure05.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_figures.py"


rule figure_attention_grid:
    input:
        maps=lambda wc: map_file(wc.size, wc.arm),
    output:
        reported(multiext("results/figures/figure{num}_attention_maps_{size}_{arm}_text{text}", ".pdf", ".png"),
                 "Attention maps", caption="grid"),
    wildcard_constraints:
        num=r"\d\d",
        text="[123]",
    params:
        figure="grid",
        size_label=lambda wc: SIZE_LABELS[wc.size],
        grid=lambda wc: METRICS_CFG["figures"]["grids"].get(wc.size, {}),
        figures=METRICS_CFG["figures"],
    log:
        "logs/analyze/figure{num}_{size}_{arm}_text{text}.log",
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/attention_figures.py"
