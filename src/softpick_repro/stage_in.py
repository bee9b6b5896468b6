"""Stage-in for clusters whose compute nodes have no internet.

    # on a login node (internet): fetch everything the config names into the HF cache
    python -m softpick_repro.stage_in --configfile config/paper.yaml --overlay config/staged.yaml
    # anywhere (no internet): check that every input is there, with HF_HUB_OFFLINE=1
    HF_HUB_OFFLINE=1 python -m softpick_repro.stage_in --configfile config/paper.yaml config/staged.yaml --check
    # then the whole DAG offline
    HF_HUB_OFFLINE=1 snakemake --profile profiles/slurm --configfile config/paper.yaml config/staged.yaml

Fetching (`--overlay`): the tokenizer and released models are snapshot-downloaded into the
Hugging Face cache (`from_pretrained` finds them there offline). Datasets - the corpus
config, the metric text and each lm-eval task's dataset - are resolved to their data files
with `datasets.load_dataset_builder` and those files downloaded into the cache; the overlay
written then points the config at them as local parquet/json files (the same keys
config/paper_offline.yaml uses for the test fixture: `data.fineweb.data_files`,
`metrics.slimpajama.data_files`, `eval.lm_eval_datasets`), so the streamed readers read the
staged files through the same code path. Checking (`--check`) loads nothing big: it runs
`remote_checks` over the merged config (local files exist, a tokenizer directory has its
files, a hub id is in the cache) and opens every local dataset (which checks its text column).
"""
from __future__ import annotations

import argparse
import sys
from urllib.parse import unquote
from pathlib import Path

import yaml

from softpick_repro.remote_checks import RemoteInputError, remote_input_problems, remote_inputs

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".gz": "json"}


def _builder_of(files: list[str]) -> str:
    kinds = {BUILDERS.get(Path(f.split("::")[0]).suffix) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise RemoteInputError(f"cannot stage data files of mixed or unknown format: {files[:3]}")
    return kinds.pop()


def _download_data_files(name: str, config: str | None) -> dict[str, list[str]]:
    """split -> local paths of the data files of hub dataset `name` (config `config`)."""
    from datasets import load_dataset_builder
    from huggingface_hub import hf_hub_download

    builder = load_dataset_builder(name, config)
    out: dict[str, list[str]] = {}
    for split, urls in (builder.config.data_files or {}).items():
        local = []
        for url in urls:
            # hf://datasets/<owner>/<name>@<revision>/<path inside the repo>
            owner, name_rev, inner = str(url).removeprefix("hf://datasets/").split("/", 2)
            repo, _, revision = name_rev.partition("@")
            local.append(hf_hub_download(f"{owner}/{repo}", inner, repo_type="dataset",
                                         revision=unquote(revision) or None))
        out[str(split)] = local
    if not out:
        raise RemoteInputError(f"{name}/{config}: the hub lists no data files to stage")
    return out


def _lm_eval_dataset(task: str) -> tuple[str, str | None]:
    """(dataset_path, dataset_name) lm-eval's own YAML of `task` reads."""
    import lm_eval.tasks

    from softpick_repro.evaluate.lm_eval_runner import PAPER_TASK_DIRS

    class _IgnoreTags(yaml.SafeLoader):
        pass

    _IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)
    root = Path(lm_eval.tasks.__file__).parent / PAPER_TASK_DIRS[task]
    for path in sorted(root.glob("*.yaml")):
        cfg = yaml.load(path.read_text(), Loader=_IgnoreTags) or {}
        if cfg.get("task") == task:
            return cfg["dataset_path"], cfg.get("dataset_name")
    raise RemoteInputError(f"eval.tasks.lm_eval: no YAML of lm-eval defines task {task!r}")


def fetch(config: dict) -> dict:
    """Download every remote input of `config`; returns the overlay pointing at the staged files."""
    from huggingface_hub import snapshot_download

    from softpick_repro.released import fetch_checkpoint

    overlay: dict = {}
    for item in remote_inputs(config):
        kind = item["kind"]
        if item.get("data_files") is not None:
            print(f"{item['key']}: local files, nothing to fetch")
            continue
        if kind == "tokenizer":
            snapshot_download(item["name"], allow_patterns=["*.json", "tokenizer.model"])
        elif kind == "released_model":
            fetch_checkpoint(item["name"])
        elif kind in ("corpus", "metric_text"):
            files = _download_data_files(item["name"], item["config"])
            section = {"name": _builder_of([f for fs in files.values() for f in fs]), "config": None,
                       "data_files": files}
            where = ("data", "fineweb") if kind == "corpus" else ("metrics", "slimpajama")
            overlay.setdefault(where[0], {})[where[1]] = section
        elif kind == "lm_eval_task":
            path, name = _lm_eval_dataset(item["task"])
            files = _download_data_files(path, name)
            overlay.setdefault("eval", {}).setdefault("lm_eval_datasets", {})[item["task"]] = {
                "dataset_path": _builder_of([f for fs in files.values() for f in fs]),
                "dataset_name": None, "dataset_kwargs": {"data_files": files}}
        print(f"{item['key']}: staged {item.get('name') or item.get('task')}")
    return overlay


def check(config: dict) -> list[str]:
    """Problems (one line each) that would stop an offline run of `config`; [] = ready."""
    from softpick_repro.data.corpus import open_stream

    problems = remote_input_problems(config, reach_hub=True)
    for item in remote_inputs(config):
        if any(line.startswith(item["key"]) for line in problems):
            continue
        if item["kind"] in ("corpus", "metric_text") and item.get("data_files") is not None:
            try:
                open_stream(item["name"], item["config"], data_files=item["data_files"],
                            split=item["split"], text_column=item["text_column"], key=item["key"])
            except (RemoteInputError, ValueError, FileNotFoundError) as err:
                problems.append(f"{item['key']}: {str(err).splitlines()[0]}")
        if item["kind"] == "lm_eval_task" and item.get("data_files") is None and \
                config["eval"]["source"] == "lm_eval":
            problems.append(f"{item['key']}: {item['task']} reads {_lm_eval_dataset(item['task'])[0]} "
                            "from the hub; stage it (--overlay) or give a local copy")
    return problems


def main(argv: list[str] | None = None) -> int:
    from softpick_repro.config import load_config
    from softpick_repro.cost import _config_paths

    parser = argparse.ArgumentParser(prog="python -m softpick_repro.stage_in",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", action="extend", nargs="+", default=[], required=True)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--overlay", help="fetch everything, then write this overlay (local copies)")
    mode.add_argument("--check", action="store_true", help="only check that an offline run has every input")
    args = parser.parse_args(argv)
    config = load_config(_config_paths(args.configfile))
    if args.check:
        problems = check(config)
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"every remote input of the config is available offline ({len(remote_inputs(config))} checked)")
        return 1 if problems else 0
    overlay = fetch(config)
    Path(args.overlay).write_text("# written by python -m softpick_repro.stage_in: the staged local copies\n"
                                  + yaml.safe_dump(overlay, sort_keys=False))
    print(f"wrote {args.overlay}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
