"""Dead attention heads (SOFTPICK.md section 4; Figure 6 and Table 5).

Conventions, fixed by the paper's protocol:

- The output of head h at token t is h's `head_dim`-wide slice of the input to the layer's
  output projection `o_proj` (after any static mask and after gated_attention's gate), read
  with a forward pre-hook on `model.layers.{i}.self_attn.o_proj`.
- Head h is dead at token t when max_d |o[t, h, d]| < eps (strict); a head is dead when that
  holds for at least `dead_fraction` (0.95) of the measured tokens (>=, inclusive).
- Tokens: non-overlapping windows of `seq_len` tokens cut from the start of the validation
  shard (`val.bin`, packed like the training data: documents start with BOS and run on into
  each other), `token_budget // seq_len` windows (at least one, at most what the shard holds).
  Every position of every window counts, position 0 included.
- Layers and heads are 0-based everywhere here (figures print them 1-based).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from softpick_repro.evaluate.lm_eval_runner import resolve_device

log = logging.getLogger(__name__)

DEFAULT_EPS = (1e-6, 1e-2)
DEFAULT_DEAD_FRACTION = 0.95
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ------------------------------------------------------------------------------ loading
def load_model(model_dir: str | os.PathLike, *, device: str = "auto",
               dtype: str | torch.dtype = "float32",
               masked_heads: Sequence[Sequence[int]] | None = None):
    """Load an exported model directory (safetensors, no remote code) in eval mode."""
    from softpick_repro.model.llama_export import load_exported

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not an exported model directory (no config.json)")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    model = load_exported(model_dir, dtype=dtype)
    if masked_heads is not None:
        model.set_masked_heads(masked_heads)
    return model.to(resolve_device(device)).eval()


def checkpoint_step(model_dir: str | os.PathLike) -> int:
    """The training step of an exported model, from the export's provenance.json."""
    from softpick_repro.io import load_json

    record = load_json(Path(model_dir) / "provenance.json")
    if "step" not in record:
        raise ValueError(f"{model_dir}/provenance.json has no 'step' entry")
    return int(record["step"])


# ------------------------------------------------------------------------------- tokens
def held_out_windows(tokens_dir: str | os.PathLike, seq_len: int, token_budget: int,
                     split: str = "val") -> torch.Tensor:
    """int64 [N, seq_len]: the first N = token_budget // seq_len windows of the shard."""
    from softpick_repro.train.data import open_shard, read_manifest

    if seq_len < 1 or token_budget < 1:
        raise ValueError(f"seq_len and token_budget must be >= 1, got {seq_len}, {token_budget}")
    shard = open_shard(tokens_dir, split, read_manifest(tokens_dir))
    available = len(shard) // seq_len
    if available == 0:
        raise ValueError(f"{tokens_dir}/{split}.bin holds {len(shard)} tokens, fewer than one "
                         f"window of seq_len {seq_len}")
    wanted = max(1, token_budget // seq_len)
    count = min(wanted, available)
    if count < wanted:
        log.warning("%s/%s.bin holds only %d windows of %d tokens; the budget asked for %d",
                    tokens_dir, split, available, seq_len, wanted)
    flat = np.asarray(shard[: count * seq_len], dtype=np.int64)
    return torch.from_numpy(flat.reshape(count, seq_len))


# ---------------------------------------------------------------------------- measuring
class _DeadTokenCounter:
    """Forward pre-hooks on every o_proj counting, per eps, the tokens where a head is dead."""

    def __init__(self, model, eps_values: Sequence[float]):
        cfg = model.config
        self.num_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.layers = list(model.model.layers)
        device = next(model.parameters()).device
        self.eps = torch.tensor([float(e) for e in eps_values], dtype=torch.float64, device=device)
        self.counts = torch.zeros(len(eps_values), len(self.layers), self.num_heads,
                                  dtype=torch.int64, device=device)
        self.tokens = 0
        self.handles = []

    def __enter__(self):
        for index, layer in enumerate(self.layers):
            self.handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._hook(index)))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, index: int):
        def hook(module, args):
            x = args[0]
            width = self.num_heads * self.head_dim
            if x.shape[-1] != width:
                raise ValueError(f"o_proj input of layer {index} has width {x.shape[-1]}, "
                                 f"expected heads x head_dim = {width}")
            peak = x.detach().reshape(-1, self.num_heads, self.head_dim).abs().amax(-1)
            # Compare in float64 so that eps is not rounded to the activation dtype.
            dead = peak.double()[None] < self.eps[:, None, None]  # [E, tokens, H]
            self.counts[:, index] += dead.sum(1)
            if index == 0:
                self.tokens += peak.shape[0]
        return hook


@torch.no_grad()
def dead_token_fractions(model, windows: torch.Tensor, eps_values: Sequence[float] = DEFAULT_EPS,
                         batch_size: int = 8, progress: bool = False) -> tuple[np.ndarray, int]:
    """Fraction of tokens at which each head is dead: float64 [len(eps), layers, heads], tokens."""
    if windows.dim() != 2 or windows.numel() == 0:
        raise ValueError(f"windows must be a non-empty [N, T] tensor, got shape {tuple(windows.shape)}")
    top = int(windows.max())
    if top >= model.config.vocab_size:
        raise ValueError(f"token id {top} >= model vocab_size {model.config.vocab_size}: "
                         "the tokens and the model come from different tokenizers")
    device = next(model.parameters()).device
    model.eval()
    starts = range(0, windows.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="dead heads", unit="batch")
    with _DeadTokenCounter(model, eps_values) as counter:
        for start in starts:
            batch = windows[start: start + batch_size].to(device)
            model(input_ids=batch, use_cache=False)
    if counter.tokens != windows.numel():
        raise RuntimeError(f"hooks saw {counter.tokens} tokens, expected {windows.numel()}")
    return counter.counts.double().cpu().numpy() / counter.tokens, counter.tokens


def classify(fractions: np.ndarray, dead_fraction: float = DEFAULT_DEAD_FRACTION) -> list[list[int]]:
    """[layer, head] pairs (0-based, sorted) whose dead-token fraction is >= dead_fraction."""
    return [[int(layer), int(head)] for layer, head in np.argwhere(fractions >= dead_fraction)]


def measure_dead_heads(model, windows: torch.Tensor, eps_values: Sequence[float] = DEFAULT_EPS,
                       dead_fraction: float = DEFAULT_DEAD_FRACTION, batch_size: int = 8,
                       progress: bool = False) -> dict:
    """The dead-head record of one model (JSON-ready; see `dead_heads_at` to read it)."""
    if not 0 < dead_fraction <= 1:
        raise ValueError(f"dead_fraction must lie in (0, 1], got {dead_fraction}")
    if not eps_values or any(not e > 0 for e in eps_values):
        raise ValueError(f"eps values must be positive, got {list(eps_values)}")
    fractions, tokens = dead_token_fractions(model, windows, eps_values, batch_size, progress)
    layers, heads = fractions.shape[1:]
    by_eps = []
    for eps, frac in zip(eps_values, fractions):
        dead = classify(frac, dead_fraction)
        by_eps.append({
            "eps": float(eps),
            "num_dead": len(dead),
            "percent_dead": 100.0 * len(dead) / (layers * heads),
            "dead_heads": dead,
            "dead_token_fraction": frac.round(6).tolist(),
        })
    return {
        "num_layers": int(layers), "num_heads": int(heads), "tokens": int(tokens),
        "windows": int(windows.shape[0]), "seq_len": int(windows.shape[1]),
        "dead_fraction": float(dead_fraction), "by_eps": by_eps,
    }


def entry_at(record: dict, eps: float) -> dict:
    """The `by_eps` entry of `record` measured at `eps` (matched to relative 1e-9)."""
    for entry in record["by_eps"]:
        if math.isclose(entry["eps"], eps, rel_tol=1e-9):
            return entry
    have = [entry["eps"] for entry in record["by_eps"]]
    raise KeyError(f"dead-head record has no entry for eps={eps:g} (it holds {have})")


def dead_heads_at(record: dict, eps: float) -> list[list[int]]:
    return [list(pair) for pair in entry_at(record, eps)["dead_heads"]]


def dead_heads_over_training(records: Iterable[dict], eps: float) -> list[tuple[int, float]]:
    """(step, percent dead) sorted by step, from records that carry a "step" key."""
    points = sorted((int(r["step"]), float(entry_at(r, eps)["percent_dead"])) for r in records)
    steps = [s for s, _ in points]
    if len(set(steps)) != len(steps):
        raise ValueError(f"duplicate training steps among dead-head records: {steps}")
    return points


# ------------------------------------------------------------------- masking (Table 5)
def masked_evaluations(model, record: dict, eps_values: Sequence[float],
                       evaluate: Callable[[object], dict]) -> list[dict]:
    """Evaluate `model` unmasked, then with the heads `record` classifies dead at each eps
    zeroed statically (config `masked_heads`); `evaluate(model)` -> {task: {metric: value}}.

    The model's mask is cleared again afterwards.
    """
    cfg = model.config
    if (record["num_layers"], record["num_heads"]) != (cfg.num_hidden_layers, cfg.num_attention_heads):
        raise ValueError(f"dead-head record is for {record['num_layers']} layers x {record['num_heads']} "
                         f"heads, the model has {cfg.num_hidden_layers} x {cfg.num_attention_heads}")
    rows = []
    try:
        for eps in (None, *eps_values):
            heads = [] if eps is None else dead_heads_at(record, eps)
            model.set_masked_heads(heads)
            log.info("evaluating with %d masked heads (eps %s)", len(heads), eps)
            rows.append({"mask_eps": eps, "num_masked": len(heads), "masked_heads": heads,
                         "results": evaluate(model)})
    finally:
        model.set_masked_heads([])
    return rows


def table5_tasks(tasks: Sequence) -> list:
    """The configured tasks Table 5 reports, in the paper's column order: the perplexity
    ones, then the cloze ones (wikitext, lambada_openai at paper scale; their embedded
    stand-ins otherwise)."""
    chosen = [t for kind in ("perplexity", "cloze") for t in tasks if t.kind == kind]
    if not chosen:
        raise ValueError(f"Table 5 needs a perplexity or cloze task; configured: "
                         f"{[(t.name, t.kind) for t in tasks]}")
    return chosen


def run_masked_eval(model_dir: str | os.PathLike, deadheads_json: str | os.PathLike,
                    out_path: str | os.PathLike, cfg: dict, eval_cfg: dict, *,
                    task_dir: str | os.PathLike | None = None, max_length: int | None = None,
                    device: str = "auto", meta: dict | None = None) -> dict:
    """Table 5 for one model: lm-eval's perplexity and cloze tasks (evaluation stage's
    `evaluate_model`, same settings as the benchmark tables) unmasked and masked at each of
    `cfg["eps"]`. `cfg`/`eval_cfg` are the config's `dead_heads:` and `eval:` sections."""
    import time

    from transformers import AutoTokenizer

    from softpick_repro.evaluate.lm_eval_runner import evaluate_model
    from softpick_repro.evaluate.run import configured_tasks, dataset_overrides, eval_dtype
    from softpick_repro.evaluate.tasks import TABLE_METRICS
    from softpick_repro.io import dump_json, load_json, provenance

    start = time.perf_counter()
    record = load_json(deadheads_json)
    dev = resolve_device(device)
    tasks = table5_tasks(configured_tasks(eval_cfg, task_dir))
    model = load_model(model_dir, device=str(dev), dtype=eval_dtype(eval_cfg["dtype"], dev))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    runs: list[dict] = []

    def evaluate(m) -> dict:
        out = evaluate_model(m, tokenizer, tasks, limit=eval_cfg["limit"] or None,
                             batch_size=eval_cfg["batch_size"], device=str(dev), task_dir=task_dir,
                             max_length=max_length, add_bos=eval_cfg["add_bos"],
                             bootstrap_iters=eval_cfg["bootstrap_iters"],
                             dataset_overrides=dataset_overrides(eval_cfg))
        runs.append({k: v for k, v in out.items() if k != "tasks"})
        return {name: task["metrics"] for name, task in out["tasks"].items()}

    rows = masked_evaluations(model, record, cfg["eps"], evaluate)
    result = {
        "num_layers": record["num_layers"], "num_heads": record["num_heads"],
        "dead_fraction": record["dead_fraction"], "deadheads_json": str(deadheads_json),
        "model_dir": str(model_dir), "step": checkpoint_step(model_dir),
        "tasks": [{"name": t.name, "kind": t.kind, "stands_in_for": t.stands_in_for,
                   "table_metrics": list(TABLE_METRICS[t.kind])} for t in tasks],
        "rows": rows, "eval_runs": runs, "seconds": round(time.perf_counter() - start, 3),
        **(meta or {}),
    }
    result["provenance"] = provenance({"dead_heads": cfg, "eval": eval_cfg})
    dump_json(result, out_path)
    return result


def table5_metrics(masked_record: dict) -> list[tuple[str, str, str]]:
    """(task, metric, column name) of Table 5, from a `run_masked_eval` record."""
    out = []
    for task in masked_record["tasks"]:
        label = task["name"] if not task.get("stands_in_for") or task["stands_in_for"] == task["name"] \
            else f"{task['name']} ({task['stands_in_for']})"
        out += [(task["name"], metric, f"{label} {metric}") for metric in task["table_metrics"]]
    return out


# ----------------------------------------------------------------------- entry points
def run_dead_heads(model_dir: str | os.PathLike, tokens_dir: str | os.PathLike,
                   out_path: str | os.PathLike, cfg: dict, *, device: str = "auto",
                   meta: dict | None = None) -> dict:
    """One exported checkpoint -> its dead-head record (JSON). `cfg` is the config's
    `dead_heads:` section; the record carries the training step from the export."""
    import time

    from softpick_repro.io import dump_json, provenance

    start = time.perf_counter()
    model = load_model(model_dir, device=device, dtype=cfg["dtype"])
    windows = held_out_windows(tokens_dir, cfg["seq_len"], cfg["token_budget"])
    record = measure_dead_heads(model, windows, cfg["eps"], cfg["dead_fraction"],
                                cfg["batch_size"], progress=True)
    record.update(step=checkpoint_step(model_dir), model_dir=str(model_dir), dtype=cfg["dtype"],
                  seconds=round(time.perf_counter() - start, 3), **(meta or {}))
    record["provenance"] = provenance(cfg)
    dump_json(record, out_path)
    for entry in record["by_eps"]:
        log.info("eps %g: %d / %d heads dead (%.2f%%)", entry["eps"], entry["num_dead"],
                 record["num_layers"] * record["num_heads"], entry["percent_dead"])
    return record


__all__ = ["DEFAULT_DEAD_FRACTION", "DEFAULT_EPS", "checkpoint_step", "classify",
           "dead_heads_at", "dead_heads_over_training", "dead_token_fractions", "entry_at",
           "held_out_windows", "load_model", "masked_evaluations", "measure_dead_heads",
           "run_dead_heads", "run_masked_eval", "table5_metrics", "table5_tasks"]
