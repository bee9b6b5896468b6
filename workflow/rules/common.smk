# Config validation, wildcard constraints, input functions and the target list.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from softpick_repro.config import ConfigError, validate_config
from softpick_repro import plan
from softpick_repro.plan import released_models, stage_enabled
from softpick_repro.plan import train_params as plan_train_params
from softpick_repro.plancheck import check_plan

try:
    validate_config(config)
    # every setting a job would reject, before the first job; a cluster job re-reads this file
    # and need not repeat it (it builds meta models, i.e. imports torch and transformers)
    if workflow.is_main_process:
        check_plan(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

SIZES = [s["name"] for s in config["sizes"]]
SIZE_CFG = {s["name"]: s for s in config["sizes"]}
ARMS_BY_GROUP = config["runs"]
# Seeds: every run is trained, evaluated and analysed once per seed, under
# results/{size}/{arm}/seed_{seed}/ (the one seed wildcard); tables combine the seeds.
SEEDS = [str(s) for s in config["runs"]["seeds"]]
FIRST_SEED = SEEDS[0]   # figures of single models (attention maps, box plots) show this seed


wildcard_constraints:
    size="|".join(re.escape(s) for s in SIZES),
    arm="|".join(re.escape(a) for group in ("main_arms", "appendix_arms", "variant_arms") for a in ARMS_BY_GROUP[group]),
    ckpt=r"final|step_\d+",
    seed="|".join(SEEDS),
    shard=r"\d{5}",


def corpus_files(wildcards=None):
    """Inputs of the data stage: the embedded corpus files (none for a streamed corpus)."""
    if config["data"]["source"] != "embedded":
        return []
    files = sorted(Path(config["data"]["corpus_dir"]).glob("*.txt.xz"))
    if not files:
        raise WorkflowError(
            f"data.corpus_dir={config['data']['corpus_dir']!r} holds no *.txt.xz corpus files"
        )
    return [str(f) for f in files]


def reported(paths, category, caption=None):
    """Flag the .csv/.png among `paths` for `snakemake --report`; the caption is
    workflow/report/<key>.rst (the key from the file name, or `caption`), the same caption
    results/report.html prints."""
    from softpick_repro.report.html import caption_key

    flagged = []
    for path in paths:
        if str(path).endswith((".csv", ".png")):
            key = caption or caption_key(Path(path).stem)
            path = report(path, caption=f"../report/{key}.rst", category=category)
        flagged.append(path)
    return flagged


def token_shard_parts(wildcards=None):
    """part.json of every tokenize_shard job: data.shards of them, known without the data
    (the manifest's gather depends on them; every reader of tokens depends on the manifest)."""
    return [f"results/data/tokens/shards/{shard:05d}/part.json" for shard in range(config["data"]["shards"])]


def paper_targets():
    """Every table and figure of the paper this config produces, and what they rest on."""
    return [
        "results/data/tokens/manifest.json",
        *training_targets(),
        *analysis_targets(),
        *eval_targets(),
        *benchmark_report_targets(),
        *deadhead_passkey_targets(),
        *report_targets(),
    ]


SCORECARD_TARGETS = [
    *expand("results/tables/paper_comparison.{ext}", ext=["csv", "md"]),
    *expand("results/tables/claims.{ext}", ext=["csv", "md"]),
]


def all_targets():
    """Every target of the configured run; each stage adds its own as it lands."""
    return [*paper_targets(), *SCORECARD_TARGETS, "results/report.html"]


def report_tables(wildcards=None):
    tables = [t for t in paper_targets() + SCORECARD_TARGETS if t.startswith("results/tables/")]
    return [t for t in tables if t.endswith(".csv")]


def report_figures(wildcards=None):
    return [t for t in paper_targets() if t.startswith("results/figures/") and t.endswith(".png")]


def scorecard_inputs(wildcards=None):
    """Result files behind the comparison and the claims, keyed kind|size|arm[|extra]."""
    inputs = {}
    for seed in SEEDS:
        inputs.update({f"eval|{seed}|{size}|{arm}|{quant}": eval_file(size, arm, quant, seed)
                       for size, arm, quant in evaluations()})
        inputs.update({f"attention_final|{seed}|{size}|{arm}": path
                       for (size, arm), path in table2_inputs(seed).items()})
        inputs.update({f"attention_variant|{seed}|{SIZES[0]}|{arm}": path
                       for arm, path in table3_inputs(seed).items()})
        inputs.update({f"passkey|{seed}|{size}|{arm}": f"{run_dir(size, arm, seed)}/passkey.json"
                       for size, arm in passkey_runs()})
        for size, arm in deadheads_runs():
            inputs[f"masked_eval|{seed}|{size}|{arm}"] = f"{run_dir(size, arm, seed)}/deadheads/masked_eval.json"
            for ckpt in deadheads_ckpts(size, arm):
                inputs[f"dead_heads|{seed}|{size}|{arm}|{ckpt}"] = f"{run_dir(size, arm, seed)}/deadheads/{ckpt}.json"
        for size, arm in training_runs():
            if arm in ARMS_BY_GROUP["main_arms"]:
                inputs[f"summary|{seed}|{size}|{arm}"] = f"{run_dir(size, arm, seed)}/train/summary.json"
    return inputs


CURVE_ARMS = {
    "figure02_training_curves": ["softmax", "softpick"],
    "figure07_training_curves_variants": ["softmax", "softpick", "rectified", "scalable_softpick"],
}


def report_targets():
    """Table 6 and Figures 2/7: they describe training, so only runs trained here count."""
    targets = []
    if training_runs():
        targets += expand("results/tables/table06_training_config.{ext}", ext=["csv", "md", "tex"])
    for name, arms in CURVE_ARMS.items():
        if curve_inputs(arms)(None):
            targets += expand("results/figures/{name}.{ext}", name=[name], ext=["pdf", "png"])
    return targets


# ---- training runs -------------------------------------------------------------------
SMALLEST = SIZES[0]


def run_dir(size, arm, seed):
    """Where everything of one (size, arm, seed) run lives."""
    return f"results/{size}/{arm}/seed_{seed}"


def trained_arms(size):
    """Arms trained at `size`: main arms everywhere, appendix and variant arms at the smallest."""
    arms = list(ARMS_BY_GROUP["main_arms"])
    if size == SMALLEST:
        arms += ARMS_BY_GROUP["appendix_arms"] + ARMS_BY_GROUP["variant_arms"]
    return arms


# Released-model mode: (size, arm) -> hub id or directory of the authors' fla checkpoint;
# rule import_released (released.smk) writes its train/final/ instead of pretrain + export_hf.
RELEASED = released_models(config)
# import_released's one wildcard "{size}/{arm}/seed_{seed}", limited to the released pairs
# ((?!) = none); a released model has one seed (check_released allows one).
RELEASED_RUN_REGEX = "|".join(re.escape(f"{s}/{a}/seed_{FIRST_SEED}") for s, a in RELEASED) or "(?!)"


def is_released(size, arm):
    return (size, arm) in RELEASED


def model_runs():
    """Every (size, arm) with a final model, trained or released."""
    return [(size, arm) for size in SIZES for arm in trained_arms(size)]


def training_runs():
    """(size, arm) pairs trained here: released ones are imported instead."""
    return [run for run in model_runs() if not is_released(*run)]


def released_params(wildcards):
    size, arm, _ = wildcards.released.split("/")
    return {"size": size, "arm": arm, "source": RELEASED[(size, arm)],
            "preset": SIZE_CFG[size]["preset"], "step": SIZE_CFG[size]["steps"]}


ALL_ARMS = sorted({arm for _, arm in training_runs()})


def variant_step(size):
    """The Table 3 step: the full schedule stopped at runs.variant_fraction of its steps."""
    return plan.variant_step(config, size)


def keep_steps(size, arm):
    """Intermediate steps exported next to the final model (dead heads; Table 3)."""
    return plan.keep_steps(config, size, arm)


def train_params(wildcards):
    return plan_train_params(config, wildcards.size, wildcards.arm, wildcards.seed)


# A changed training setting retrains under a new checkpoint key (softpick_repro.train.rundirs);
# say which finished runs are about to be replaced, and where the previous ones stay, before any job.
from softpick_repro.train.rundirs import changed_run, run_checkpoint_dir

for _size, _arm in training_runs():
    for _seed in SEEDS:
        _note = changed_run(f"{run_dir(_size, _arm, _seed)}/train", f"checkpoints/{_size}/{_arm}/seed_{_seed}",
                            plan_train_params(config, _size, _arm, _seed))
        if _note:
            print(f"NOTE: {_note}", file=sys.stderr)


def training_targets():
    return [f"{run_dir(size, arm, seed)}/train/final" for size, arm in model_runs() for seed in SEEDS]


# ---- analyze stage ---------------------------------------------------------------
METRICS_CFG = config["metrics"]
MAP_ARMS = ["softmax", "softpick"]
GRID_BASE = [8, 14]
SIZE_LABELS = {s["name"]: s["label"] for s in config["sizes"]}


def _uses_gpu():
    """Jobs run on CUDA: device cuda, or auto with a GPU visible where Snakemake plans."""
    if config["device"] == "auto":
        import torch

        return torch.cuda.is_available()
    return config["device"] == "cuda"


USES_GPU = _uses_gpu()


def job_gpus(wildcards=None):
    """The `gpu` resource of an evaluation/analysis job: one GPU on CUDA (profiles cap the
    sum, so jobs never share a GPU), none on CPU."""
    return 1 if USES_GPU else 0


def train_gpus(wildcards=None):
    """The `gpu` resource of a training job: one per torchrun process."""
    return config["train"]["processes"] if USES_GPU else 0


def multinode_resources(train):
    """Across nodes (train.nodes > 1): the job's nodes, one task per node (its torchrun agent),
    and the executor plugin's `mpi` resource, which makes the plugin run the job script in the
    batch step instead of inside its own `srun -n1` (softpick_repro.train.launch starts one
    agent per node with srun). Nothing for one node."""
    nodes = train.get("nodes", 1)
    return {"nodes": nodes, "tasks": nodes, "mpi": "torchrun"} if nodes > 1 else {}


def attention_metric_inputs(wildcards):
    inputs = {"model": f"{run_dir(wildcards.size, wildcards.arm, wildcards.seed)}/train/{wildcards.ckpt}"}
    if METRICS_CFG["text_source"] == "val_shard":
        inputs["manifest"] = "results/data/tokens/manifest.json"
    return inputs


def attention_map_inputs(wildcards):
    inputs = {"model": f"{run_dir(wildcards.size, wildcards.arm, wildcards.seed)}/train/{wildcards.ckpt}"}
    if METRICS_CFG.get("map_text", "appendix") == "val_shard":
        inputs["manifest"] = "results/data/tokens/manifest.json"
    return inputs


def table2_inputs(seed=FIRST_SEED):
    """(size, arm) -> metrics of the final model, every size x main arm, column order."""
    return {(size, arm): f"{run_dir(size, arm, seed)}/metrics/attention_final.json"
            for size in SIZES for arm in ARMS_BY_GROUP["main_arms"]}


def table3_arms():
    arms = []
    for group in ("main_arms", "appendix_arms", "variant_arms"):
        arms += [a for a in ARMS_BY_GROUP[group] if a not in arms]
    return arms


def table3_inputs(seed=FIRST_SEED):
    """arm -> metrics at the variant step of the smallest size (every arm the same step);
    released arms have no such checkpoint and are left out."""
    size = SIZES[0]
    return {arm: f"{run_dir(size, arm, seed)}/metrics/attention_{plan.variant_ckpt(config, size, arm)}.json"
            for arm in table3_arms() if not is_released(size, arm)}


def map_file(size, arm, seed=FIRST_SEED):
    return f"{run_dir(size, arm, seed)}/metrics/attention_maps_final.safetensors"


def grid_figures():
    """(number, size, arm, text) of Figures 8-19 for the first two sizes."""
    specs = []
    for base, size in zip(GRID_BASE, SIZES):
        for text in (1, 2, 3):
            for i, arm in enumerate(MAP_ARMS):
                specs.append((base + 2 * (text - 1) + i, size, arm, text))
    return specs


def grid_stem(num, size, arm, text):
    return f"results/figures/figure{num:02d}_attention_maps_{size}_{arm}_text{text}"


def analysis_targets():
    """Tables 2-3 and Figures 1, 4, 5, 8-19 (the map figures need softmax and softpick)."""
    targets = expand("results/tables/table02_attention_metrics.{ext}", ext=["csv", "md", "tex"])
    if table3_inputs():  # empty when every Table 3 arm is released (no 10%-step checkpoints)
        targets += expand("results/tables/table03_attention_variants.{ext}", ext=["csv", "md", "tex"])
    if all(a in ARMS_BY_GROUP["main_arms"] for a in MAP_ARMS):
        names = ["figure01_attention_sink", "figure04_activation_boxplots",
                 "figure05_attention_heads"]
        names += [Path(grid_stem(*spec)).name for spec in grid_figures()]
        targets += expand("results/figures/{name}.{ext}", name=names, ext=["pdf", "png"])
    return targets


# ---- evaluate stage --------------------------------------------------------------
from softpick_repro.evaluate.quantize import quant_names
from softpick_repro.report.benchmark_tables import benchmark_table_stems

EVAL_CFG = config["eval"]
QUANT_CFG = config["quantization"]
# stages.quantization / stages.benchmarks off: no quantized evaluations / no evaluations at all
QUANT_METHODS_ON = QUANT_CFG["methods"] if stage_enabled(config, "quantization") else {}
QUANTS = quant_names(QUANT_METHODS_ON)
TASK_DIR = "results/data/eval_tasks"
TABLE_STEMS = (benchmark_table_stems(config["sizes"], ARMS_BY_GROUP, QUANT_METHODS_ON)
               if stage_enabled(config, "benchmarks") else {})


def evaluations():
    """(size, arm, quant): every trained main/appendix arm unquantized (Tables 1, 7), and
    the main arms at every configured width (Tables 8-13, Figure 3)."""
    runs = []
    if not stage_enabled(config, "benchmarks"):
        return runs
    for size in SIZES:
        for arm in trained_arms(size):
            if arm in ARMS_BY_GROUP["variant_arms"]:
                continue  # Table 3 models: attention metrics only
            runs.append((size, arm, "none"))
            if arm in ARMS_BY_GROUP["main_arms"]:
                runs += [(size, arm, q) for q in QUANTS]
    return runs


def eval_file(size, arm, quant, seed=FIRST_SEED):
    return f"{run_dir(size, arm, seed)}/eval/{quant}.json"


def eval_targets():
    return [eval_file(*run, seed) for run in evaluations() for seed in SEEDS]


def benchmark_report_targets():
    stems = [f"results/tables/{stem}.{ext}" for stem in TABLE_STEMS for ext in ("csv", "md", "tex")]
    if QUANTS:
        stems += expand("results/figures/figure03_quantization.{ext}", ext=["pdf", "png"])
    return stems


def eval_inputs(wildcards):
    inputs = {"model": f"{run_dir(wildcards.size, wildcards.arm, wildcards.seed)}/train/final"}
    if EVAL_CFG["source"] == "embedded":
        inputs["tasks"] = TASK_DIR
    if wildcards.quant.startswith("gptq"):
        inputs["tokens"] = "results/data/tokens/manifest.json"
    return inputs


def eval_set_files(wildcards=None):
    from softpick_repro.evaluate.tasks import embedded_sets

    return [str(f) for _, _, f, _ in embedded_sets(config["data"]["eval_dir"], EVAL_CFG["tasks"]["embedded"])]


# ---- report stage ----------------------------------------------------------------
def curve_inputs(arms):
    """metrics.csv of `arms` at every size where they were trained (not released), every seed."""

    def inputs(wildcards):
        return {
            f"{size}|{arm}|{seed}": f"{run_dir(size, arm, seed)}/train/metrics.csv"
            for size in SIZES
            for arm in arms
            if arm in trained_arms(size) and not is_released(size, arm)
            for seed in SEEDS
        }

    return inputs


# ---- deadheads stage -------------------------------------------------------------
DEADHEADS_CFG = config["dead_heads"]
PASSKEY_CFG = config["passkey"]
# The evaluation stage's generated lm-eval task directory (embedded tasks); Table 5 runs
# the same tasks with the same settings as the benchmark tables.
MASKED_EVAL_TASK_DIR = TASK_DIR


def deadheads_runs():
    """(size, arm) pairs of Figure 6 and Table 5: dead_heads.arms where trained."""
    if not stage_enabled(config, "dead_heads"):
        return []
    return [(size, arm) for size in SIZES for arm in DEADHEADS_CFG["arms"] if arm in trained_arms(size)]


def passkey_runs():
    """(size, arm) pairs of Table 4: passkey.arms where trained, in config order."""
    if not stage_enabled(config, "passkey"):
        return []
    return [(size, arm) for size in SIZES for arm in PASSKEY_CFG["arms"] if arm in trained_arms(size)]


def deadheads_ckpts(size, arm):
    """Every export of a run, in step order: the kept intermediate steps, then final (only
    final for a released model)."""
    if is_released(size, arm):
        return ["final"]
    return [f"step_{step}" for step in keep_steps(size, arm)] + ["final"]


def figure06_inputs(wildcards):
    """Dead heads over training: trained runs only."""
    return {
        f"{size}|{arm}|{seed}|{ckpt}": f"{run_dir(size, arm, seed)}/deadheads/{ckpt}.json"
        for size, arm in deadheads_runs()
        if not is_released(size, arm)
        for seed in SEEDS
        for ckpt in deadheads_ckpts(size, arm)
    }


def table04_inputs(wildcards):
    return {f"{size}|{arm}": f"{run_dir(size, arm, wildcards.seed)}/passkey.json" for size, arm in passkey_runs()}


def table05_inputs(wildcards):
    return {f"{size}|{arm}": f"{run_dir(size, arm, wildcards.seed)}/deadheads/masked_eval.json"
            for size, arm in deadheads_runs()}


# Tables written once per seed under results/tables/seed_{seed}/ and combined by rule
# combine_seeds into results/tables/ (mean ± std with >= 2 seeds).
PER_SEED_TABLES = [*TABLE_STEMS, "table02_attention_metrics", "table03_attention_variants",
                   "table04_passkey", "table05_dead_head_masking"]


def seed_table_caption(wildcards):
    """combine_seeds' caption for `snakemake --report` (workflow/report/seed_table.rst prints it)."""
    from softpick_repro.report.html import caption_text

    spread = f" Mean ± std over seeds {', '.join(SEEDS)}." if len(SEEDS) > 1 else ""
    return caption_text(wildcards.table) + spread


def deadhead_passkey_targets():
    targets = []
    if passkey_runs():
        targets += expand("results/tables/table04_passkey.{ext}", ext=["csv", "md", "tex"])
    if deadheads_runs():
        targets += expand("results/tables/table05_dead_head_masking.{ext}", ext=["csv", "md", "tex"])
    if figure06_inputs(None):
        targets += expand("results/figures/figure06_dead_heads.{ext}", ext=["pdf", "png"])
    return targets


def masked_eval_inputs(wildcards):
    inputs = {
        "model": f"{run_dir(wildcards.size, wildcards.arm, wildcards.seed)}/train/final",
        "deadheads": f"{run_dir(wildcards.size, wildcards.arm, wildcards.seed)}/deadheads/final.json",
    }
    if config["eval"]["source"] == "embedded":
        inputs["task_dir"] = MASKED_EVAL_TASK_DIR
    return inputs
