"""Cost preview: the jobs a config plans and the GPU-hours they imply.

    python -m softpick_repro.cost --configfile config/config.yaml --configfile config/paper.yaml [--json out.json]

Config files merge like Snakemake's (the default config/config.yaml first, then the
overlays; dicts merge, lists replace); the job plan is `softpick_repro.plan`'s.

FLOP conventions (SOFTPICK.md section 4, the MFU note), per token, with N the parameters
without the input embedding table (a lookup; the lm_head is a matmul and counts), L layers,
d = heads x head dim, T the sequence length the token sits in:
- training (forward + backward): 6 N + 6 L T d   (attention 12 L T d, halved because causal)
- a forward pass (evaluation, analysis): 2 N + 2 L T d
GPU-hours of a job = FLOPs / (peak x MFU of its stage) + job_overhead_min on each of its
GPUs; wall hours = GPU-hours / GPUs. Config `cost:` holds peak, MFUs and the overhead.

Token counts: training = stop step x global batch x seq_len (the periodic validation passes
add < 0.1% and are left out). lm-eval's own tasks use the rough sizes in LM_EVAL_TASKS (all
documents of the split, each choice a separate request); the embedded tasks are measured
from the data files at ~CHARS_PER_TOKEN characters per token. Analysis stages read their
token budgets from the config. The vocabulary is the BPE size of the config, or 32000 for
a pretrained tokenizer (the paper's).

CPU stages and disk: tokenization is priced in CPU-hours from the measured tokens/s of one
core (`cost.tokenize_tokens_per_s_per_core`) over the tokens the data stage writes (the
train-token cap divided by 1 - val_fraction; for the embedded corpus its characters at
~CHARS_PER_TOKEN); its wall hours are one shard job's, the `data.shards` jobs running side by
side at `cost.tokenize_cpus_per_job` cores each. Disk per stage, from byte counts (estimates,
not measured): token shards 2 bytes per token (uint16; 4 above 65,536 ids), the resumable
training state BYTES_PER_PARAM_STATE per parameter per run, each kept snapshot and each export
4 bytes per parameter (float32 safetensors).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from softpick_repro import plan
from softpick_repro.config import REPO_ROOT, load_config

PAPER_VOCAB = 32000
CHARS_PER_TOKEN = 4.0
# lm-eval task -> (tokens of one 0-shot pass over the split, typical tokens per request).
# Rough: documents x choices x request length with the 32k Llama/Mistral tokenizer.
LM_EVAL_TASKS = {
    "arc_easy": (2376 * 4 * 35, 35),         # test, ~4 choices, "Question: ... Answer: <choice>"
    "lambada_openai": (5153 * 95, 95),       # test passages, target word
    "piqa": (1838 * 2 * 45, 45),             # validation, 2 solutions
    "sciq": (1000 * 4 * 140, 140),           # test, support paragraph + question, 4 choices
    "wikitext": (330_000, 4096),             # wikitext-2 test, ~245k words, rolling windows
}
STAGES = ("train", "eval", "analysis")
BYTES_PER_PARAM_STATE = 12   # float32 weights + AdamW's two float32 moments (checkpoints/)
BYTES_PER_PARAM_EXPORT = 4   # float32 safetensors (weights/ snapshots, exports)
STAGE_OF = {"tokenize_shard": "data", "tokenize": "data", "pretrain": "train", "evaluate": "eval", "attention_metrics": "analysis",
            "attention_maps": "analysis", "dead_heads": "analysis", "masked_eval": "analysis",
            "passkey": "analysis"}


@dataclass
class Job:
    """One planned job; `gpus` 0 = a CPU job (counted, not priced)."""

    rule: str
    size: str | None = None
    arm: str | None = None
    detail: str = ""
    seed: int | None = None   # a job on one run has the run's seed
    gpus: int = 0
    tokens: float = 0.0
    flops: float = 0.0
    gpu_hours: float = 0.0
    cpus: int = 0          # cores of a priced CPU job (tokenization)
    cpu_hours: float = 0.0
    disk_gb: float = 0.0   # what the job's outputs (and resumable state) occupy

    @property
    def stage(self) -> str:
        return STAGE_OF.get(self.rule, "cpu")

    @property
    def wall_hours(self) -> float:
        if self.gpus:
            return self.gpu_hours / self.gpus
        return self.cpu_hours / self.cpus if self.cpus else 0.0


# ---- model shapes and FLOPs ----------------------------------------------------------
def vocab_size(config: dict) -> int:
    tok = config["tokenizer"]
    return tok["vocab_size"] if tok["kind"] == "bpe" else PAPER_VOCAB


def model_shape(config: dict, size: str, arm: str) -> tuple[int, int, int]:
    """(N without the input embedding, layers, attention width d) of (size, arm)."""
    from softpick_repro.model.presets import build_config, count_parameters

    cfg = build_config(plan.size_cfg(config, size)["preset"], arm, vocab_size(config))
    width = cfg.num_attention_heads * cfg.head_dim
    return count_parameters(cfg, embeddings=False), cfg.num_hidden_layers, width


def train_flops(shape: tuple[int, int, int], seq_len: int, tokens: float) -> float:
    n, layers, width = shape
    return (6 * n + 6 * layers * seq_len * width) * tokens


def forward_flops(shape: tuple[int, int, int], seq_len: int, tokens: float) -> float:
    n, layers, width = shape
    return (2 * n + 2 * layers * seq_len * width) * tokens


def total_parameters(config: dict, size: str, arm: str) -> int:
    from softpick_repro.model.presets import build_config, count_parameters

    return count_parameters(build_config(plan.size_cfg(config, size)["preset"], arm, vocab_size(config)))


def corpus_tokens(config: dict) -> float | None:
    """Tokens the data stage writes (train + val), or None when the stream is unbounded."""
    data = config["data"]
    if data["source"] == "fineweb_edu":
        cap = data["fineweb"]["max_tokens"]
        return cap / (1 - data["val_fraction"]) if cap else None
    if data["source"] == "embedded":
        import lzma

        from softpick_repro.data.corpus import corpus_files

        chars = 0
        for path in corpus_files(data["corpus_dir"]):
            with lzma.open(path, "rt", encoding="utf-8") as handle:
                chars += sum(len(line) for line in handle)
        return chars / CHARS_PER_TOKEN
    return None


def tokenize_jobs(config: dict) -> list[Job]:
    """The data.shards tokenize_shard jobs (CPU-hours, disk) and the gather job."""
    cost, shards = config["cost"], config["data"]["shards"]
    total = corpus_tokens(config)
    itemsize = 2 if vocab_size(config) <= 65536 else 4
    jobs = []
    for shard in range(shards):
        job = Job("tokenize_shard", detail=f"shard {shard}", cpus=cost["tokenize_cpus_per_job"])
        if total is not None:
            job.tokens = total / shards
            job.cpu_hours = job.tokens / cost["tokenize_tokens_per_s_per_core"] / 3600
            job.disk_gb = job.tokens * itemsize / 1e9
        jobs.append(job)
    return jobs + [Job("tokenize")]


# ---- token budgets ---------------------------------------------------------------------
def eval_passes(config: dict, kinds: tuple[str, ...] | None = None) -> list[tuple[str, float, int]]:
    """(task, tokens, sequence length) of one evaluation pass; `kinds` filters by task kind."""
    ev = config["eval"]
    max_len = ev["max_length"] or config["train"]["seq_len"]
    if ev["source"] == "lm_eval":
        from softpick_repro.evaluate.tasks import PAPER_TASKS

        return [(t, float(LM_EVAL_TASKS[t][0]), min(LM_EVAL_TASKS[t][1], max_len))
                for t in ev["tasks"]["lm_eval"] if kinds is None or PAPER_TASKS[t] in kinds]
    from softpick_repro.data.evalsets import iter_eval_file
    from softpick_repro.evaluate.tasks import embedded_sets

    passes = []
    for name, kind, path, _ in embedded_sets(config["data"]["eval_dir"], ev["tasks"]["embedded"]):
        if kinds is not None and kind not in kinds:
            continue
        chars, requests = 0, 0
        for i, rec in enumerate(iter_eval_file(path, kind)):
            if ev["limit"] and i >= ev["limit"]:
                break
            if kind == "multiple_choice":
                chars += sum(len(rec["question"]) + 1 + len(c) for c in rec["choices"])
                requests += len(rec["choices"])
            else:
                chars += len(rec["text"])
                requests += 1
        tokens = chars / CHARS_PER_TOKEN
        seq = max(1, min(max_len, round(tokens / max(requests, 1))))
        passes.append((name, tokens, seq))
    return passes


def _price(job: Job, shape, passes, config: dict, train: bool = False) -> Job:
    cost = config["cost"]
    fn = train_flops if train else forward_flops
    job.tokens = sum(tokens for tokens, _ in passes)
    job.flops = sum(fn(shape, seq, tokens) for tokens, seq in passes)
    rate = cost["gpu_peak_tflops"] * 1e12 * cost["mfu"][job.stage]
    job.gpu_hours = job.flops / rate / 3600 + job.gpus * cost["job_overhead_min"] / 60
    return job


# ---- the priced plan -------------------------------------------------------------------
def plan_jobs(config: dict) -> list[Job]:
    """Every planned job of `config` (GPU jobs priced), in stage order."""
    tr = config["train"]
    jobs = [Job("train_tokenizer"), *tokenize_jobs(config)]
    for size, arm in plan.training_runs(config):
        step = plan.stop_step(config, size, arm)
        tokens = float(step * tr["global_batch"] * tr["seq_len"])
        job = _price(Job("pretrain", size, arm, f"{step} steps", gpus=tr["processes"]),
                     model_shape(config, size, arm), [(tokens, tr["seq_len"])], config, train=True)
        snapshots = len(plan.keep_steps(config, size, arm)) + 1
        job.disk_gb = total_parameters(config, size, arm) * (
            BYTES_PER_PARAM_STATE + snapshots * BYTES_PER_PARAM_EXPORT) / 1e9
        jobs.append(job)
    jobs += [Job("export_hf", s, a, c, disk_gb=total_parameters(config, s, a) * BYTES_PER_PARAM_EXPORT / 1e9)
             for s, a, c in plan.exports(config)]
    jobs += [Job("import_released", s, a, src) for (s, a), src in plan.released_models(config).items()]

    passes = [(t, seq) for _, t, seq in eval_passes(config)]
    calib = config["quantization"]["calibration"]
    for size, arm, quant in plan.evaluations(config):
        extra = [(float(calib["samples"] * calib["length"]), calib["length"])] if quant.startswith("gptq") else []
        jobs.append(_price(Job("evaluate", size, arm, quant, gpus=1), model_shape(config, size, arm),
                           passes + extra, config))

    met = config["metrics"]
    metric_passes = [(float(met["num_samples"] * met["seq_len"]), met["seq_len"])]
    metric_passes += [(float(met["sweep_samples"] * n), n) for n in met["length_sweep"]]
    for size, arm, ckpt in plan.attention_metric_runs(config):
        jobs.append(_price(Job("attention_metrics", size, arm, ckpt, gpus=1),
                           model_shape(config, size, arm), metric_passes, config))
    for size, arm in plan.attention_map_runs(config):  # three short appendix texts
        jobs.append(_price(Job("attention_maps", size, arm, "final", gpus=1),
                           model_shape(config, size, arm), [(3 * 64.0, 64)], config))
    dh = config["dead_heads"]
    dh_tokens = float(dh["token_budget"] // dh["seq_len"] * dh["seq_len"])
    masked = [(t, seq) for _, t, seq in eval_passes(config, ("perplexity", "cloze"))]
    for size, arm in plan.deadheads_runs(config):
        shape = model_shape(config, size, arm)
        for ckpt in plan.deadheads_ckpts(config, size, arm):
            jobs.append(_price(Job("dead_heads", size, arm, ckpt, gpus=1), shape,
                               [(dh_tokens, dh["seq_len"])], config))
        rounds = 1 + len(dh["eps"])  # unmasked, then masked at each eps
        jobs.append(_price(Job("masked_eval", size, arm, f"{rounds} passes", gpus=1), shape,
                           [(t * rounds, seq) for t, seq in masked], config))
    pk = config["passkey"]
    lengths = [max(1, round(f * tr["seq_len"])) for f in pk["fractions"]]
    for size, arm in plan.passkey_runs(config):
        jobs.append(_price(Job("passkey", size, arm, f"{len(lengths)} lengths", gpus=1),
                           model_shape(config, size, arm),
                           [(float(pk["trials"] * n), n) for n in lengths], config))
    # every job on a run is repeated per seed (a released model has one: check_released),
    # except the maps of the single-model figures, drawn from the first seed
    def seeds_of(job: Job) -> list:
        if not job.size:
            return [None]
        return plan.seeds(config)[:1] if job.rule in plan.FIRST_SEED_ONLY else plan.seeds(config)

    return [replace(job, seed=seed) if job.size else job for job in jobs for seed in seeds_of(job)]


def find_job(jobs: list[Job], rule: str, size: str, arm: str) -> Job:
    return next(j for j in jobs if (j.rule, j.size, j.arm) == (rule, size, arm))


def totals(jobs: list[Job]) -> dict[str, float]:
    out = {stage: sum(j.gpu_hours for j in jobs if j.stage == stage) for stage in STAGES}
    out["all"] = sum(out.values())
    return out


# ---- report ----------------------------------------------------------------------------
def _table(header: list[str], rows: list[list], left: int = 2) -> list[str]:
    """Plain-text table; the first `left` columns (names) flush left, numbers flush right."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]


def _num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def render(config: dict, jobs: list[Job]) -> str:
    cost = config["cost"]
    mfu = cost["mfu"]
    out = [f"Cost preview: {config['run_label']}",
           f"GPU: {cost['gpu_name']}, {cost['gpu_peak_tflops']:g} TFLOP/s peak; MFU train {mfu['train']:.2f}, "
           f"eval {mfu['eval']:.2f}, analysis {mfu['analysis']:.2f}; {cost['job_overhead_min']:g} min "
           "overhead per GPU job and GPU",
           "FLOPs/token: training 6N + 6LTd, forward 2N + 2LTd (N without input embedding)", ""]
    train = [j for j in jobs if j.rule == "pretrain"]
    if train:
        out.append("Training runs")
        rows = [[j.size, j.arm, j.seed, j.detail, f"{j.tokens:.3g}", f"{model_shape(config, j.size, j.arm)[0] / 1e6:,.0f}M",
                 f"{j.flops:.3g}", j.gpus, _num(j.gpu_hours), _num(j.wall_hours)] for j in train]
        out += _table(["size", "arm", "seed", "steps", "tokens", "N", "FLOPs", "GPUs", "GPU-h", "wall-h"], rows)
        out.append("")
    out.append("Jobs by rule")
    rows = []
    for rule in dict.fromkeys(j.rule for j in jobs):
        group = [j for j in jobs if j.rule == rule]
        priced = group[0].gpus > 0
        rows.append([group[0].stage, rule, len(group), group[0].gpus if priced else "cpu",
                     f"{sum(j.tokens for j in group):.3g}" if priced else "-",
                     f"{sum(j.flops for j in group):.3g}" if priced else "-",
                     _num(sum(j.gpu_hours for j in group)) if priced else "-",
                     _num(max(j.wall_hours for j in group), 2) if priced else "-"])
    out += _table(["stage", "rule", "jobs", "GPUs/job", "tokens", "FLOPs", "GPU-h", "max wall-h/job"], rows)
    tot = totals(jobs)
    out += ["", "Total GPU-hours: " + ", ".join(f"{s} {_num(tot[s])}" for s in STAGES)
            + f"; all {_num(tot['all'])} (= {_num(tot['all'] / 8)} hours of one 8-GPU node)"]
    out += ["", "CPU time and disk by rule (disk from byte counts: estimates)"]
    rows = []
    for rule in dict.fromkeys(j.rule for j in jobs):
        group = [j for j in jobs if j.rule == rule]
        if not any(j.cpu_hours or j.disk_gb for j in group) and rule != "tokenize_shard":
            continue
        unbounded = rule == "tokenize_shard" and not any(j.tokens for j in group)
        rows.append([group[0].stage, rule, len(group), group[0].cpus or "-",
                     "unbounded" if unbounded else (_num(sum(j.cpu_hours for j in group)) if group[0].cpus else "-"),
                     "unbounded" if unbounded else (_num(max(j.wall_hours for j in group), 2) if group[0].cpus else "-"),
                     _num(sum(j.disk_gb for j in group))])
    out += _table(["stage", "rule", "jobs", "cores/job", "CPU-h", "wall-h (jobs side by side)", "disk GB"], rows)
    disk = cpu_totals(jobs)
    out += ["", f"Total CPU-hours (tokenization) {_num(disk['cpu_hours'])}; disk {_num(disk['disk_gb'])} GB "
            f"(token shards {_num(disk['disk_by_rule'].get('tokenize_shard', 0))}, training state and snapshots "
            f"{_num(disk['disk_by_rule'].get('pretrain', 0))}, exports {_num(disk['disk_by_rule'].get('export_hf', 0))})",
            "Not priced: the other CPU jobs (tokenizer, gather, exports, imports, tables, figures): minutes each."]
    return "\n".join(out)


def cpu_totals(jobs: list[Job]) -> dict:
    by_rule: dict[str, float] = {}
    for j in jobs:
        by_rule[j.rule] = by_rule.get(j.rule, 0.0) + j.disk_gb
    return {"cpu_hours": sum(j.cpu_hours for j in jobs), "disk_gb": sum(by_rule.values()),
            "disk_by_rule": {k: v for k, v in by_rule.items() if v}}


def _config_paths(given: list[str]) -> list[Path]:
    """Snakemake always loads the Snakefile's config/config.yaml first; so does this."""
    default = REPO_ROOT / "config" / "config.yaml"
    paths = [Path(p) for p in given]
    if not paths or paths[0].resolve() != default.resolve():
        paths.insert(0, default)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softpick_repro.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", action="extend", nargs="+", default=[],
                        help="config files merged in order (config/config.yaml is always first)")
    parser.add_argument("--json", default=None, help="also write every job as JSON here")
    args = parser.parse_args(argv)
    config = load_config(_config_paths(args.configfile))
    jobs = plan_jobs(config)
    print(render(config, jobs))
    if args.json:
        from softpick_repro.io import dump_json

        dump_json({"config": config["cost"], "totals_gpu_hours": totals(jobs),
                   "totals_cpu_and_disk": cpu_totals(jobs),
                   "jobs": [{**asdict(j), "stage": j.stage, "wall_hours": j.wall_hours} for j in jobs]},
                  args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
