# Softpick reproduction pipeline (arXiv 2504.20966): see README.md.
#
# Path scheme (one spelling everywhere, docs/ARCHITECTURE.md):
#   results/data/tokenizer/                       tokenizer (transformers directory)
#   results/data/tokens/shards/{shard}/           token shard {shard} of data.shards; manifest.json gathers them
#   results/{size}/{arm}/train/metrics.csv        per-step training metrics
#   results/{size}/{arm}/train/final/             exported Hugging Face model (or imported: released.smk)
#   results/{size}/{arm}/train/step_{step}/       exported intermediate checkpoints
#   results/{size}/{arm}/eval/{quant}.json        benchmark results (quant: none, hqq2, bnb4, gptq4, ...)
#   results/tables/tableNN_<name>.{csv,md,tex}    paper tables
#   results/figures/figureNN_<name>.{pdf,png}     paper figures
#   checkpoints/{size}/{arm}/                     resumable training state (not a rule output)
#   logs/<stage>/...  benchmarks/<stage>/...      per-job logs and resource benchmarks

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


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
