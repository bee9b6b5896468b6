# Softpick reproduction pipeline (arXiv 2504.20966): see README.md.
#
# Path scheme (one spelling everywhere, docs/ARCHITECTURE.md). One run = (size, arm, seed);
# the seed is the {seed} wildcard, one directory level `seed_{seed}` (runs.seeds, e.g. seed_79):
#   results/data/tokenizer/                                tokenizer (transformers directory)
#   results/data/tokens/shards/{shard}/                    token shard {shard} of data.shards; manifest.json gathers them
#   results/{size}/{arm}/seed_{seed}/train/metrics.csv     per-step training metrics
#   results/{size}/{arm}/seed_{seed}/train/final/          exported Hugging Face model (or imported: released.smk)
#   results/{size}/{arm}/seed_{seed}/train/step_{step}/    exported intermediate checkpoints
#   results/{size}/{arm}/seed_{seed}/eval/{quant}.json     benchmark results (quant: none, hqq2, bnb4, gptq4, ...)
#   results/tables/seed_{seed}/tableNN_<name>.{csv,md,tex} one seed's table
#   results/tables/tableNN_<name>.{csv,md,tex}             paper tables (mean ± std over the seeds)
#   results/figures/figureNN_<name>.{pdf,png}              paper figures (spread over the seeds)
#   checkpoints/{size}/{arm}/seed_{seed}/{key}/            resumable training state per setting key (not a rule output)
#   logs/<stage>/...  benchmarks/<stage>/...               per-job logs and resource benchmarks

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/preflight.smk"
configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/released.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/deadheads.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
