"""The job plan of a merged config, outside Snakemake, and the released-model mode.

`workflow/rules/common.smk` plans the workflow's jobs with functions of the same names; this
module restates that plan as plain functions of the config dict so the cost preview
(`softpick_repro.cost`) can price it without Snakemake. tests/test_cost.py compares the job
counts here with a Snakemake dry-run, so the two cannot drift apart unnoticed.

Conventions (config keys: workflow/schemas/config.schema.yaml):
- sizes are config order, smallest first; the main arms run at every size, the appendix and
  variant arms only at the smallest;
- a variant arm stops at round(steps * runs.variant_fraction) of its size's full schedule;
- every (size, arm) run, and each job on it, is repeated once per seed of `runs.seeds`
  (results/{size}/{arm}/seed_{seed}/); the functions below list one seed's runs;
- `stages:` switches off whole stages (benchmarks, quantization, passkey, dead heads): their
  jobs, tables and figures leave the plan (config/sinklab.yaml);
- released-model mode (`released_models.enabled`): each listed (size, arm) is imported from
  the authors' fla checkpoint instead of trained. Only its final model exists, so everything
  that needs intermediate steps or training logs leaves it out: Table 3 (step-10% metrics),
  Figure 6 (dead heads over training), Figures 2/7 (training curves), Table 6 (training
  configuration, kept only while some run is still trained).
"""
from __future__ import annotations

from softpick_repro.config import ConfigError

GROUPS = ("main_arms", "appendix_arms", "variant_arms")
STAGES = ("benchmarks", "quantization", "passkey", "dead_heads")


def stage_enabled(config: dict, stage: str) -> bool:
    """Whether `stages.<stage>` is on (every stage is on when the section is absent);
    quantization needs benchmarks, since it is the quantized benchmark evaluation."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    on = bool(config.get("stages", {}).get(stage, True))
    return on and (stage != "quantization" or stage_enabled(config, "benchmarks"))


def seeds(config: dict) -> list[int]:
    return list(config["runs"]["seeds"])


def sizes(config: dict) -> list[str]:
    return [s["name"] for s in config["sizes"]]


def size_cfg(config: dict, size: str) -> dict:
    return next(s for s in config["sizes"] if s["name"] == size)


def model_arms(config: dict, size: str) -> list[str]:
    """Arms that have a model at `size` (trained or released); common.smk's trained_arms."""
    runs = config["runs"]
    arms = list(runs["main_arms"])
    if size == sizes(config)[0]:
        arms += runs["appendix_arms"] + runs["variant_arms"]
    return arms


def variant_step(config: dict, size: str) -> int:
    return max(1, round(size_cfg(config, size)["steps"] * config["runs"]["variant_fraction"]))


def stop_step(config: dict, size: str, arm: str) -> int:
    if arm in config["runs"]["variant_arms"]:
        return variant_step(config, size)
    return size_cfg(config, size)["steps"]


def keep_steps(config: dict, size: str, arm: str) -> list[int]:
    """Intermediate steps a training run exports (every keep_every steps, and the Table 3 step)."""
    every = size_cfg(config, size)["keep_every"]
    last = stop_step(config, size, arm)
    steps = set(range(every, last, every)) if every else set()
    if variant_step(config, size) < last:  # a variant arm stops there: its final is that step
        steps.add(variant_step(config, size))
    return sorted(steps)


def variant_ckpt(config: dict, size: str, arm: str) -> str:
    """The export holding the Table 3 step of a run: `final` for a variant arm (it stops
    there), `step_N` for an arm that trains on."""
    step = variant_step(config, size)
    return "final" if stop_step(config, size, arm) == step else f"step_{step}"


def train_params(config: dict, size: str, arm: str, seed: int | str | None = None) -> dict:
    """The TrainConfig fields of one training run (the `params.train` of rule pretrain):
    the shared `train` section, the size's schedule, the arm's stop step and kept steps, and
    the run's seed (the {seed} wildcard; None keeps train.seed, as the plan check does)."""
    entry = size_cfg(config, size)
    return {
        **config["train"],
        "preset": entry["preset"],
        "arm": arm,
        **({"seed": int(seed)} if seed is not None else {}),
        "steps": entry["steps"],
        "lr": entry["lr"],
        "warmup_steps": entry["warmup_steps"],
        "stop_at_step": stop_step(config, size, arm),
        "keep_steps": keep_steps(config, size, arm),
        "device": config["device"],
        **({"activation_checkpointing": entry["activation_checkpointing"]}
           if "activation_checkpointing" in entry else {}),
    }


# ---- released-model mode -------------------------------------------------------------
def released_models(config: dict) -> dict[tuple[str, str], str]:
    """(size, arm) -> Hub repo id or local directory; empty unless released_models.enabled."""
    section = config["released_models"]
    if not section["enabled"]:
        return {}
    return {(size, arm): source for size, arms in section["models"].items()
            for arm, source in arms.items()}


def check_released(config: dict) -> None:
    """Raise ConfigError naming the key when the released-model section cannot be planned."""
    section = config["released_models"]
    if not section["enabled"]:
        return
    if len(seeds(config)) > 1:
        raise ConfigError(f"config error at runs.seeds: released models have one seed each, so "
                          f"released_models.enabled needs a single seed (got {seeds(config)})")
    if not released_models(config):
        raise ConfigError("config error at released_models.models: released_models.enabled is "
                          "true but no model is listed (size -> arm -> hub id or directory)")
    known = sizes(config)
    for (size, arm), _ in released_models(config).items():
        where = f"released_models.models.{size}.{arm}"
        if size not in known:
            raise ConfigError(f"config error at {where}: size {size!r} is not in sizes ({', '.join(known)})")
        if arm in config["runs"]["variant_arms"]:
            raise ConfigError(
                f"config error at {where}: {arm!r} is a variant arm; Table 3 measures variant arms "
                "at an intermediate training step, which a released final model does not have")
        if arm not in model_arms(config, size):
            raise ConfigError(f"config error at {where}: arm {arm!r} is not planned at size "
                              f"{size!r} (planned: {', '.join(model_arms(config, size))})")


def is_released(config: dict, size: str, arm: str) -> bool:
    return (size, arm) in released_models(config)


# ---- the plan --------------------------------------------------------------------------
def model_runs(config: dict) -> list[tuple[str, str]]:
    """Every (size, arm) with a final model, trained or released."""
    return [(size, arm) for size in sizes(config) for arm in model_arms(config, size)]


def training_runs(config: dict) -> list[tuple[str, str]]:
    """(size, arm) pairs the workflow trains (released ones are imported instead)."""
    return [run for run in model_runs(config) if not is_released(config, *run)]


def quants(config: dict) -> list[str]:
    from softpick_repro.evaluate.quantize import quant_names

    if not stage_enabled(config, "quantization"):
        return []
    return quant_names(config["quantization"]["methods"])


def evaluations(config: dict) -> list[tuple[str, str, str]]:
    """(size, arm, quant): main and appendix arms unquantized, main arms at every width."""
    runs = []
    if not stage_enabled(config, "benchmarks"):
        return runs
    for size, arm in model_runs(config):
        if arm in config["runs"]["variant_arms"]:
            continue
        runs.append((size, arm, "none"))
        if arm in config["runs"]["main_arms"]:
            runs += [(size, arm, q) for q in quants(config)]
    return runs


def table3_arms(config: dict) -> list[str]:
    """Arms of Table 3 (smallest size, variant step): every arm once, released ones left out."""
    arms: list[str] = []
    for group in GROUPS:
        arms += [a for a in config["runs"][group] if a not in arms]
    smallest = sizes(config)[0]
    return [a for a in arms if not is_released(config, smallest, a)]


def attention_metric_runs(config: dict) -> list[tuple[str, str, str]]:
    """(size, arm, ckpt) of attention_metrics: finals of the main arms, Table 3's step."""
    runs = [(size, arm, "final") for size in sizes(config) for arm in config["runs"]["main_arms"]]
    smallest = sizes(config)[0]
    extra = [(smallest, arm, variant_ckpt(config, smallest, arm)) for arm in table3_arms(config)]
    return runs + [run for run in extra if run not in runs]


MAP_ARMS = ("softmax", "softpick")
# rules run for the first seed only: the attention maps behind the single-model figures
FIRST_SEED_ONLY = ("attention_maps",)


def attention_map_runs(config: dict) -> list[tuple[str, str]]:
    """(size, arm) of attention_maps: softmax and softpick at the first two sizes (Figures 1, 5, 8-19)."""
    if not all(a in config["runs"]["main_arms"] for a in MAP_ARMS):
        return []
    return [(size, arm) for size in sizes(config)[:2] for arm in MAP_ARMS]


def deadheads_runs(config: dict) -> list[tuple[str, str]]:
    if not stage_enabled(config, "dead_heads"):
        return []
    return [(size, arm) for size in sizes(config) for arm in config["dead_heads"]["arms"]
            if arm in model_arms(config, size)]


def deadheads_ckpts(config: dict, size: str, arm: str) -> list[str]:
    """Exports the dead-head analysis reads: every kept step and final; final only if released."""
    if is_released(config, size, arm):
        return ["final"]
    return [f"step_{s}" for s in keep_steps(config, size, arm)] + ["final"]


def passkey_runs(config: dict) -> list[tuple[str, str]]:
    if not stage_enabled(config, "passkey"):
        return []
    return [(size, arm) for size in sizes(config) for arm in config["passkey"]["arms"]
            if arm in model_arms(config, size)]


def exports(config: dict) -> list[tuple[str, str, str]]:
    """(size, arm, ckpt) of every export_hf job: the final model of each training run and
    the intermediate steps some analysis reads (dead heads over training, Table 3)."""
    trained = set(training_runs(config))
    wanted = [(size, arm, "final") for size, arm in training_runs(config)]
    wanted += attention_metric_runs(config)
    wanted += [(size, arm, ckpt) for size, arm in deadheads_runs(config)
               for ckpt in deadheads_ckpts(config, size, arm)]
    return [run for run in dict.fromkeys(wanted) if run[:2] in trained]
