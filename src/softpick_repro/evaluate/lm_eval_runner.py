"""Zero-shot evaluation of an in-memory model with lm-evaluation-harness (`simple_evaluate`).

BOS convention: every training document starts with BOS (id 1) and our byte-level BPE
tokenizer adds no special tokens by itself, so lm-eval's `add_bos_token=True` alone would
change nothing for it, while for the paper's Llama tokenizer lm-eval's rolling perplexity
would put BOS twice in front of a document (its window prefix plus the tokenizer's own).
`BosHFLM` makes both tokenizers behave the same: with `add_bos=True` every scored sequence
starts with exactly one BOS - the context of a multiple-choice or cloze request gets BOS in
front, and a rolling-perplexity document gets only lm-eval's window prefix (BOS). The BOS
itself is never scored.

Result layout (`evaluate_model`'s return value, JSON-ready; NaN/inf stay floats and are
spelled "nan"/"inf" by `softpick_repro.io.dump_json`):

    {"lm_eval_version", "num_fewshot": 0, "limit", "batch_size", "max_length", "add_bos",
     "device", "dtype", "wall_time_s",
     "tasks": {name: {"kind", "lm_eval_task", "stands_in_for", "version", "n_samples",
                      "n_docs", "metrics": {"acc": 0.61, "acc_stderr": 0.01, ...}}}}

Metric names are lm-eval's (acc, acc_norm, perplexity, word_perplexity, byte_perplexity,
bits_per_byte), values as lm-eval computes them (accuracies in [0, 1], not x100).
"""
from __future__ import annotations

import logging
import time
from importlib import metadata
from typing import Sequence

import torch

from softpick_repro.evaluate.tasks import TASK_PREFIX, TaskSpec

log = logging.getLogger(__name__)


def _bos_hflm_class():
    from lm_eval.models.huggingface import HFLM

    class BosHFLM(HFLM):
        """HFLM whose scored sequences start with exactly one BOS (see the module docstring)."""

        def __init__(self, *args, add_bos: bool = True, **kwargs):
            super().__init__(*args, add_bos_token=add_bos, **kwargs)
            self._bos_contexts = add_bos
            if add_bos and self.tokenizer.bos_token_id is None:
                raise ValueError("add_bos=True but the tokenizer has no BOS token")

        def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
            ids = self.tokenizer.encode(string, add_special_tokens=False)
            # lm-eval passes add_special_tokens=False for continuations scored after a context.
            if self._bos_contexts and add_special_tokens is None:
                ids = [self.tokenizer.bos_token_id] + ids
            if left_truncate_len:
                ids = ids[-left_truncate_len:]
            return ids

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            # The rolling windows already start with prefix_token_id (= BOS); no second BOS.
            saved, self._bos_contexts = self._bos_contexts, False
            try:
                return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
            finally:
                self._bos_contexts = saved

    return BosHFLM


def resolve_device(device: str | None) -> torch.device:
    """'auto'/None -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def _number(value):
    """lm-eval's stderr is the string 'N/A' when not computed; keep floats, map that to None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _task_metrics(raw: dict) -> dict:
    """{'acc,none': x, 'acc_stderr,none': y, 'alias': ...} -> {'acc': x, 'acc_stderr': y}."""
    out = {}
    for key, value in raw.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        if filt != "none":
            continue
        out[metric] = _number(value)
    return out


LOCAL_DATASETS_GROUP = "softpick_local_datasets"


def resolve_local_paths(value):
    """data_files paths (str, list, or split -> either) made absolute: lm-eval resolves
    relative paths against the working directory of whoever loads the task."""
    import os

    if isinstance(value, str):
        return os.path.abspath(os.path.expanduser(value))
    if isinstance(value, list):
        return [resolve_local_paths(v) for v in value]
    if isinstance(value, dict):
        return {k: resolve_local_paths(v) for k, v in value.items()}
    return value


def task_requests(lm_names: Sequence[str], dataset_overrides: dict | None) -> list:
    """What `simple_evaluate(tasks=...)` gets: registered task names as they are, and the
    tasks with a local dataset as overrides of lm-eval's own task configs. lm-eval applies
    overrides to a registered task only inside a group's task list (`{"task": name, key:
    value}`), so those go into one group; their task names and definitions stay lm-eval's."""
    overrides = dataset_overrides or {}
    plain = [n for n in lm_names if n not in overrides]
    local = []
    for name in lm_names:
        if name not in overrides:
            continue
        entry = dict(overrides[name])
        kwargs = dict(entry.get("dataset_kwargs") or {})
        if "data_files" in kwargs:
            kwargs["data_files"] = resolve_local_paths(kwargs["data_files"])
        local.append({"task": name, "dataset_path": entry["dataset_path"],
                      "dataset_name": entry.get("dataset_name"), "dataset_kwargs": kwargs})
    return plain + ([{"group": LOCAL_DATASETS_GROUP, "task": local}] if local else [])


# lm-eval's own task directories (under lm_eval/tasks/) of the paper's tasks: indexing only
# these instead of all ~14k YAMLs saves most of a small evaluation's time; the YAMLs read are
# lm-eval's own, so the task definitions are the same.
PAPER_TASK_DIRS = {"arc_easy": "arc", "lambada_openai": "lambada", "piqa": "piqa", "sciq": "sciq",
                   "wikitext": "wikitext"}


def task_manager(builtin: Sequence[str], task_dir: str | None):
    """An lm-eval TaskManager that knows the generated tasks of `task_dir` and the registered
    tasks `builtin` (only their own directories when all are the paper's, else every task)."""
    from pathlib import Path

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    paths = [str(task_dir)] if task_dir else []
    if builtin and all(name in PAPER_TASK_DIRS for name in builtin):
        root = Path(lm_eval.tasks.__file__).parent
        paths += sorted({str(root / PAPER_TASK_DIRS[name]) for name in builtin})
        manager = TaskManager(include_path=paths, include_defaults=False)
    else:
        manager = TaskManager(include_path=paths or None, include_defaults=bool(builtin))
    if builtin:
        from softpick_repro.remote_checks import check_lm_eval_tasks

        check_lm_eval_tasks(builtin, manager.all_tasks)
    return manager


def evaluate_model(model, tokenizer, tasks: Sequence[TaskSpec], *, limit: int | None = None,
                   batch_size: int = 8, device: str | None = "auto", task_dir: str | None = None,
                   max_length: int | None = None, add_bos: bool = True,
                   bootstrap_iters: int = 1000, seed: int = 1234,
                   dataset_overrides: dict | None = None) -> dict:
    """Evaluate `model` 0-shot on `tasks`; returns the result dict described in the module doc.

    `limit`: at most this many documents per task (None or 0 = all; lm-eval takes the first
    ones in file order). `task_dir`: the directory written by `tasks.write_task_dir`
    (needed for embedded tasks). `max_length`: token window (None = model's
    max_position_embeddings). `dataset_overrides`: lm-eval task -> {dataset_path,
    dataset_name, dataset_kwargs} read instead of the hub (`task_requests`). A model already placed by a quantizer (bitsandbytes, HQQ)
    is not moved; others are moved to `device`.
    """
    import lm_eval

    if not tasks:
        raise ValueError("no evaluation tasks given")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate task names: {names}")
    dev = resolve_device(device)
    if not getattr(model, "_softpick_quantized", False):
        model = model.to(dev)
    model.eval()
    lm = _bos_hflm_class()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                           max_length=max_length or None, add_bos=add_bos)
    # Indexing lm-eval's ~14k built-in task YAMLs takes most of a small run: skip it when
    # every task is one of our generated ones.
    builtin = [t.lm_eval_task for t in tasks if not t.lm_eval_task.startswith(TASK_PREFIX)]
    if not builtin and task_dir is None:
        raise ValueError("generated (sp_*) tasks need task_dir, the directory write_task_dir made")
    manager = task_manager(builtin, task_dir)
    by_lm_name = {t.lm_eval_task: t for t in tasks}
    start = time.perf_counter()
    with torch.inference_mode():
        results = lm_eval.simple_evaluate(
            model=lm, tasks=task_requests(list(by_lm_name), dataset_overrides), num_fewshot=0, limit=limit or None,
            task_manager=manager, log_samples=False, bootstrap_iters=bootstrap_iters,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
            fewshot_random_seed=seed)
    wall = time.perf_counter() - start
    if results is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    out_tasks = {}
    for lm_name, spec in by_lm_name.items():
        if lm_name not in results["results"]:
            raise RuntimeError(f"lm-eval produced no result for task {lm_name!r} "
                               f"(got {sorted(results['results'])})")
        metrics = _task_metrics(results["results"][lm_name])
        counts = results.get("n-samples", {}).get(lm_name, {})
        out_tasks[spec.name] = {
            "kind": spec.kind,
            "lm_eval_task": lm_name,
            "stands_in_for": spec.stands_in_for,
            "version": results.get("versions", {}).get(lm_name),
            "n_samples": counts.get("effective"),
            "n_docs": counts.get("original"),
            "metrics": metrics,
        }
        shown = {k: v for k, v in metrics.items() if not k.endswith("_stderr")}
        log.info("%s: %s", spec.name, shown)
    return {
        "lm_eval_version": metadata.version("lm_eval"),
        "num_fewshot": 0,
        "limit": limit or None,
        "batch_size": batch_size,
        "max_length": lm.max_length,
        "add_bos": add_bos,
        "device": str(dev),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "wall_time_s": wall,
        "tasks": out_tasks,
    }
