"""Export a training snapshot as a Hugging Face model directory.

Input: a snapshot written by the trainer (`weights/final.safetensors`, `weights/step_{k}.safetensors`):
safetensors weights whose metadata carries the model config, step, tokens seen, the training
config and the tensors' content digest (checked here). Output, written as one directory rename (`io.atomic_dir`):
config.json, model.safetensors (with its own content digest in the metadata, checked by
`softpick_repro.model.load_exported`), generation_config.json, the tokenizer files, provenance.json.
The result loads with `AutoModelForCausalLM.from_pretrained(dir)` after
`import softpick_repro.model` (which registers the architecture); nothing is unpickled.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from softpick_repro.integrity import HASH_KEY, add_content_hash, read_safetensors
from softpick_repro.io import atomic_dir, dump_json, provenance, sha256_file

from .records import SNAPSHOT_FORMAT

# Files the export writes itself; a tokenizer directory's copies of them are not taken.
_OWN_FILES = {"config.json", "generation_config.json", "model.safetensors",
              "model.safetensors.index.json", "provenance.json"}


def _decode_snapshot_metadata(path: Path, raw: dict) -> dict:
    if raw.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path} is not a trainer snapshot (metadata format {raw.get('format')!r}, "
                         f"expected {SNAPSHOT_FORMAT!r})")
    return {key: value if key in ("format", HASH_KEY) else json.loads(value)
            for key, value in raw.items()}


def read_snapshot_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a trainer snapshot (values decoded; contents not verified)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing weights snapshot: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    return _decode_snapshot_metadata(path, raw)


def load_snapshot_model(path: str | os.PathLike):
    """Rebuild the model of a snapshot with its weights (content digest checked; strict:
    every key must match)."""
    from transformers import AutoConfig

    import softpick_repro.model  # noqa: F401  registers the architecture with the Auto classes
    from softpick_repro.model import SoftpickForCausalLM

    path = Path(path)
    tensors, raw = read_safetensors(path)
    meta = _decode_snapshot_metadata(path, raw)
    cfg_dict = dict(meta["model_config"])
    config = AutoConfig.for_model(cfg_dict.pop("model_type"), **cfg_dict)
    model = SoftpickForCausalLM(config)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, meta


# The files a tokenizer directory must hold for the export to load as a fast tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_tokenizer_dir(tokenizer_dir: str | os.PathLike) -> Path:
    """The tokenizer directory, or an error naming it and the missing file."""
    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"missing tokenizer directory: {tokenizer_dir}")
    missing = [name for name in TOKENIZER_FILES if not (tokenizer_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"tokenizer directory {tokenizer_dir} lacks {', '.join(missing)}: it is incomplete; "
            f"delete it and rerun the train_tokenizer rule")
    return tokenizer_dir


def save_model_files(model, directory: Path) -> None:
    """config.json, model.safetensors and generation_config.json (BOS/EOS/PAD from the model
    config) of `model` into `directory`; shared by training exports and released-model imports.
    A softmax model without masked heads is written as a Llama (`model.llama_export`)."""
    from transformers import GenerationConfig

    from softpick_repro.model.llama_export import as_llama, is_plain_llama

    config = model.config
    if is_plain_llama(config):  # loads anywhere as transformers' own Llama (llama_export)
        model = as_llama(model)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else config.eos_token_id)
    model.save_pretrained(directory)
    if not (directory / "model.safetensors").exists():
        raise RuntimeError(f"save_pretrained did not write {directory / 'model.safetensors'}")
    if not (directory / "generation_config.json").exists():
        model.generation_config.save_pretrained(directory)
    for weights in sorted(directory.glob("*.safetensors")):
        add_content_hash(weights)  # checked by softpick_repro.integrity.verify_model_dir on load


def export_hf(snapshot: str | os.PathLike, tokenizer_dir: str | os.PathLike,
              out_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write the HF directory for one snapshot; return out_dir."""
    snapshot, out_dir = Path(snapshot), Path(out_dir)
    tokenizer_dir = check_tokenizer_dir(tokenizer_dir)
    model, meta = load_snapshot_model(snapshot)
    with atomic_dir(out_dir) as tmp:
        save_model_files(model, tmp)
        for item in sorted(tokenizer_dir.iterdir()):
            if item.is_file() and item.name not in _OWN_FILES:
                shutil.copyfile(item, tmp / item.name)
        record = provenance(
            meta["train_config"], step=meta["step"], tokens_seen=meta["tokens_seen"],
            arm=meta["arm"], preset=meta["preset"],
            n_params=meta["n_params"], train_config=meta["train_config"],
            snapshot=str(snapshot), snapshot_sha256=sha256_file(snapshot),
            tokenizer_dir=str(tokenizer_dir), **(extra or {}))
        dump_json(record, tmp / "provenance.json")
    return out_dir
