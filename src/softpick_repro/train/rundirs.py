"""One checkpoint directory per training trajectory, so a changed setting trains afresh.

Design (issue 21, item 4). A run's resumable state lives in
`checkpoints/{size}/{arm}/{key}/`, where `key` hashes the settings that decide its weights
(`config.trajectory`) plus its stop step and kept steps. When a training setting changes,
Snakemake reruns `pretrain` (its params changed) and deletes the old outputs first; the job
then finds no checkpoint under the new key and trains from step 0, while the old key's
directory is left untouched: its checkpoint, live metrics, kept snapshots and, hard-linked
by the trainer at publication (`published/`), the run's declared outputs (metrics.csv,
summary.json, weights/). Changing the setting back resumes the old directory at its last
step, so nothing is trained again. Before Snakemake replaces a finished run,
`changed_runs` lets the workflow say which runs are affected and where the old ones stay.

Why not the alternatives: refusing the old checkpoint (the earlier behaviour) leaves the
user with deleted results and a failing job; overwriting the checkpoint loses the previous
run; versioning `results/` paths would change every downstream path in the workflow.
Settings that do not change the weights (`TrainConfig.RESUME_FREE` minus the stop and kept
steps) keep the key, so a run resumes across them.
"""
from __future__ import annotations

import os
from pathlib import Path

from softpick_repro.io import config_hash, load_json

from .config import TrainConfig, trajectory

PUBLISHED = "published"

# Fields added after runs were keyed: at their default they stay out of the key, so the
# checkpoint directories of runs that predate them keep their names.
_KEYED_ONLY_WHEN_SET = {"weight_decay_on": "all"}


def _keyed(train_params: dict) -> dict:
    """The keyed settings, with TrainConfig's defaults filled in (a summary's train_config
    and a rule's params spell the same run alike)."""
    full = TrainConfig.from_dict(dict(train_params)).to_dict()
    keyed = dict(trajectory(full))
    keyed["stop_at_step"] = full["stop_at_step"]
    keyed["keep_steps"] = sorted(full["keep_steps"])
    for name, default in _KEYED_ONLY_WHEN_SET.items():
        if keyed.get(name) == default:
            del keyed[name]
    return keyed


def run_key(train_params: dict) -> str:
    """16 hex digits naming a trajectory (the settings that decide the published weights)."""
    return config_hash(_keyed(train_params))


def run_checkpoint_dir(root: str | os.PathLike, train_params: dict) -> str:
    """`root/{key}`: the checkpoint directory of this trajectory."""
    return str(Path(root) / run_key(train_params))


def _differences(old: dict, new: dict) -> list[str]:
    old_t, new_t = _keyed(old), _keyed(new)
    return [f"{k}: {old_t.get(k)!r} -> {new_t.get(k)!r}" for k in sorted(set(old_t) | set(new_t))
            if old_t.get(k) != new_t.get(k)]


def changed_run(out_dir: str | os.PathLike, ckpt_root: str | os.PathLike, train_params: dict) -> str | None:
    """A one-line note when `out_dir` holds a finished run trained with other settings than
    `train_params` (None when there is none, or it matches)."""
    summary_path = Path(out_dir) / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        old = load_json(summary_path)["train_config"]
        same = run_key(old) == run_key(train_params)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or foreign: Snakemake reruns the job either way
    if same:
        return None
    kept = Path(ckpt_root) / run_key(old)
    where = (f"the previous run stays in {kept}/ ({PUBLISHED}/ holds its outputs)" if kept.is_dir()
             else f"no checkpoint directory {kept}/ of the previous run exists (trained before "
                  f"per-setting directories), so its outputs are not kept")
    return (f"{out_dir} was trained with other settings ({'; '.join(_differences(old, train_params))}): "
            f"Snakemake retrains it and replaces it and everything downstream; {where}")


def keep_published(out_dir: Path, ckpt_dir: Path, names: list[str]) -> None:
    """Hard-link (copy where links are impossible) the published files into
    `ckpt_dir/published/`, so they outlive Snakemake's deletion of `out_dir`."""
    import shutil

    target = ckpt_dir / PUBLISHED
    for name in names:
        src, dst = out_dir / name, target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


__all__ = ["PUBLISHED", "changed_run", "keep_published", "run_checkpoint_dir", "run_key"]
