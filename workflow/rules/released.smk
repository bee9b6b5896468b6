# Released-model mode: the authors' fla checkpoints stand in for trained runs.
#
#   results/{size}/{arm}/seed_{seed}/train/final/    written by import_released for each pair listed under
#                                        released_models.models (same layout as export_hf's)
#
# The one wildcard {released} = "{size}/{arm}/seed_{seed}" only matches the released pairs
# (RELEASED_RUN_REGEX in common.smk), so for every other run export_hf stays the only rule
# that makes train/final; for a released pair both match and the ruleorder picks the import.

ruleorder: import_released > export_hf


rule import_released:
    input:
        tokenizer="results/data/tokenizer",
    output:
        model=directory("results/{released}/train/final"),
    wildcard_constraints:
        released=RELEASED_RUN_REGEX,
    params:
        run=released_params,
    log:
        "logs/import_released/{released}.log",
    benchmark:
        "benchmarks/import_released/{released}.tsv"
    threads: 1
    resources:
        mem_mb=32000,
        runtime=60,
    conda:
        "../../envs/softpick.yaml"
    script:
        "../scripts/import_released.py"
