"""One-line checks of the remote inputs a config names, each cheap enough to run before any
training job: a dataset without its text column, a tokenizer directory missing its files, a
task name lm-eval does not know, a hub name that cannot be reached (or, offline, is not in
the Hugging Face cache). Every check raises `RemoteInputError` whose message names the input
and the config key; none downloads data. The loaders call them where they open an input;
`remote_input_problems(config)` runs the static ones over a whole config (for a plan check
before any job, and for `softpick_repro.stage_in`).
"""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Iterable, Sequence


class RemoteInputError(ValueError):
    """A remote (or locally staged) input of the config is unusable; the message is one line."""


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_local(name: str) -> bool:
    """A path on this machine rather than a hub id (`owner/name`: exactly one slash)."""
    return (Path(name).expanduser().exists() or name.startswith((".", "/", "~"))
            or name.count("/") != 1)


def check_text_column(stream, column: str, *, where: str, key: str = "data.fineweb.text_column") -> None:
    """`stream` (a datasets IterableDataset/Dataset) has the column `column`.

    Uses the declared features (parquet schemas have them); for a builder that infers them
    (jsonl), peeks at the first row.
    """
    features = getattr(stream, "features", None)
    if features is not None:
        columns = list(features)
    else:
        first = next(iter(stream.take(1)), None) if hasattr(stream, "take") else None
        if first is None:
            raise RemoteInputError(f"dataset {where} yields no rows: nothing to read for {key}")
        columns = list(first)
    if column not in columns:
        raise RemoteInputError(f"dataset {where} has no column {column!r} (columns: "
                               f"{', '.join(columns)}): set {key}")


def check_tokenizer_dir(path: str | Path, *, key: str = "tokenizer.pretrained_name") -> None:
    """A local tokenizer directory holds the files a hub tokenizer repo ships."""
    path = Path(path)
    if not path.is_dir():
        raise RemoteInputError(f"{key}={str(path)!r} is not a directory")
    present = sorted(p.name for p in path.iterdir())
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise RemoteInputError(f"tokenizer directory {path} ({key}) holds neither "
                               f"{' nor '.join(TOKENIZER_FILES)} (found: {', '.join(present) or 'nothing'})")
    if not (path / "tokenizer.json").is_file():
        try:  # converting tokenizer.model to a fast tokenizer needs both
            import google.protobuf  # noqa: F401
            import sentencepiece  # noqa: F401
        except ImportError as err:
            raise RemoteInputError(f"tokenizer directory {path} ships only tokenizer.model; reading it "
                                   f"needs sentencepiece and protobuf ({err.name} is not installed)") from None


def check_lm_eval_tasks(names: Sequence[str], known: Iterable[str] | None = None) -> None:
    """Every name is a task lm-eval has registered (`known`: its task list; default: ask lm-eval)."""
    if known is None:
        from lm_eval.tasks import TaskManager

        known = TaskManager().all_tasks
    known = set(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RemoteInputError(f"eval.tasks.lm_eval: lm-eval {_lm_eval_version()} knows no task "
                               f"{', '.join(map(repr, unknown))}")


def shipped_task_names() -> set[str]:
    """Task, tag and group names that lm-eval's own task YAML files declare, read as text
    (~0.2 s; building lm-eval's TaskManager to list them takes ~20 s on 2 cores). A subset of
    what the TaskManager knows (Python-registered tasks are missing), so a name not found here
    is confirmed with the TaskManager before it is reported."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return set()
    tasks_dir = Path(list(spec.submodule_search_locations)[0]) / "tasks"
    names = set()
    pattern = re.compile(r"^(?:task|tag|group)\s*:\s*['\"]?([\w.\-]+)", re.MULTILINE)
    for path in tasks_dir.rglob("*.yaml"):
        try:
            names.update(pattern.findall(path.read_text(errors="replace")))
        except OSError:
            continue
    return names


def check_lm_eval_task_names(names: Sequence[str]) -> None:
    """`check_lm_eval_tasks`, fast when every name is one of lm-eval's shipped YAML tasks."""
    unknown = [n for n in names if n not in shipped_task_names()]
    if unknown:
        check_lm_eval_tasks(unknown)


def _lm_eval_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def check_data_files(data_files, *, key: str) -> None:
    """Every local path (or glob) listed in a data_files value matches at least one file."""
    if data_files is None:
        return
    if isinstance(data_files, dict):
        items = [p for v in data_files.values() for p in ([v] if isinstance(v, str) else v)]
    else:
        items = [data_files] if isinstance(data_files, str) else list(data_files)
    for item in items:
        if not glob.glob(os.path.expanduser(item)):
            raise RemoteInputError(f"{key}: no file matches {item!r}")


def check_hub_source(name: str, *, repo_type: str = "model", key: str) -> None:
    """A hub id resolves: online, the hub answers for it; with HF_HUB_OFFLINE=1, it is in the
    local Hugging Face cache (stage it first: `python -m softpick_repro.stage_in`)."""
    if is_local(name):
        if not Path(name).expanduser().exists():
            raise RemoteInputError(f"{key}={name!r}: no such local path")
        return
    from huggingface_hub import scan_cache_dir

    if hub_offline():
        try:
            cached = {r.repo_id for r in scan_cache_dir().repos if r.repo_type == repo_type}
        except Exception:  # no cache directory at all
            cached = set()
        if name not in cached:
            raise RemoteInputError(f"{key}={name!r}: HF_HUB_OFFLINE=1 and the {repo_type} is not in the "
                                   f"Hugging Face cache; run python -m softpick_repro.stage_in on a node with internet")
        return
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(name, repo_type=repo_type, timeout=20)
    except Exception as err:  # noqa: BLE001 - any failure means "cannot be reached"
        raise RemoteInputError(f"{key}={name!r}: the hub cannot be reached for this {repo_type} "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None


def remote_inputs(config: dict) -> list[dict]:
    """Every remote input the config names: {key, kind, name, repo_type, data_files}."""
    out = []
    tok = config["tokenizer"]
    if tok["kind"] == "pretrained":
        out.append({"key": "tokenizer.pretrained_name", "kind": "tokenizer",
                    "name": tok["pretrained_name"], "repo_type": "model"})
    data = config["data"]
    if data["source"] == "fineweb_edu":
        fw = data["fineweb"]
        out.append({"key": "data.fineweb", "kind": "corpus", "name": fw["name"], "config": fw["config"],
                    "repo_type": "dataset", "data_files": fw.get("data_files"), "split": fw.get("split", "train"),
                    "text_column": fw.get("text_column", "text")})
    metrics = config["metrics"]
    if metrics["text_source"] == "slimpajama":
        sp = metrics["slimpajama"]
        out.append({"key": "metrics.slimpajama", "kind": "metric_text", "name": sp["name"], "config": sp["config"],
                    "repo_type": "dataset", "data_files": sp.get("data_files"), "split": sp["split"],
                    "text_column": sp.get("text_column", "text")})
    ev = config["eval"]
    if ev["source"] == "lm_eval":
        local = ev.get("lm_eval_datasets", {})
        for task in ev["tasks"]["lm_eval"]:
            entry = {"key": f"eval.lm_eval_datasets.{task}", "kind": "lm_eval_task", "task": task,
                     "repo_type": "dataset"}
            if task in local:
                entry.update(name=local[task]["dataset_path"],
                             data_files=local[task].get("dataset_kwargs", {}).get("data_files"))
            out.append(entry)
    released = config.get("released_models", {})
    if released.get("enabled"):
        for size, arms in released.get("models", {}).items():
            for arm, source in arms.items():
                out.append({"key": f"released_models.models.{size}.{arm}", "kind": "released_model",
                            "name": source, "repo_type": "model"})
    return out


def remote_input_problems(config: dict, *, reach_hub: bool = False) -> list[str]:
    """One line per unusable input: local files and directories always; hub ids only when
    `reach_hub` (online: ask the hub; HF_HUB_OFFLINE=1: look in the cache)."""
    problems = []
    if config["eval"]["source"] == "lm_eval":
        try:
            check_lm_eval_task_names(config["eval"]["tasks"]["lm_eval"])
        except RemoteInputError as err:
            problems.append(str(err))
    for item in remote_inputs(config):
        try:
            if item.get("data_files") is not None:
                check_data_files(item["data_files"], key=item["key"] + ".data_files")
            elif item["kind"] == "tokenizer" and is_local(item["name"]):
                check_tokenizer_dir(item["name"])
            elif item["kind"] == "lm_eval_task":
                continue  # a hub task's dataset path is lm-eval's; stage_in resolves it
            elif reach_hub or is_local(item["name"]):
                check_hub_source(item["name"], repo_type=item["repo_type"], key=item["key"])
        except RemoteInputError as err:
            problems.append(str(err))
    return problems
