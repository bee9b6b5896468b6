"""Import one of the authors' released checkpoints as a pipeline model directory.

`import_released(source, tokenizer_dir, out_dir, arm=, preset=, step=)` reads an fla
"transformer" checkpoint - a Hugging Face repo id (`owner/name`) or a local directory - with
`softpick_repro.model.load_fla_checkpoint`, and writes the directory an export of a trained
run has (`softpick_repro.train.export.export_hf`): config.json + model.safetensors of
`SoftpickForCausalLM`, generation_config.json, tokenizer files, provenance.json whose
"step" is the step the config assigns to a finished run (the analyses read it).

Checks before anything is written, each failing with the reason:
- the checkpoint's attention (`attn_impl`) is the configured arm;
- its shape is the configured size's preset (hidden, layers, heads, kv heads, head dim, MLP);
- tokenizer: the checkpoint's own files when it ships them (tokenizer.json / tokenizer.model),
  else the pipeline's tokenizer; when both exist their vocabularies must be identical, since
  the token shards (held-out text, GPTQ calibration) were made with the pipeline's;
- the tokenizer's ids fit the model's vocabulary.
Weights keep the checkpoint's dtype. Only *.json, *.safetensors and tokenizer.model are read
or downloaded; nothing is unpickled and no remote code runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from softpick_repro.io import atomic_dir, dump_json, provenance, sha256_file
from softpick_repro.train.export import save_model_files

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
# Written by the import itself; a tokenizer directory's copies of these are not taken.
_OWN_FILES = {"config.json", "generation_config.json", "model.safetensors",
              "model.safetensors.index.json", "provenance.json"}
_SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "intermediate_size")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def fetch_checkpoint(source: str | os.PathLike) -> tuple[Path, dict]:
    """Local directory of `source` and where it came from ({"kind": "local"|"hub", ...})."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), {"kind": "local", "path": str(path.resolve())}
    if path.exists():
        raise ValueError(f"released model {source}: is a file; give the checkpoint directory")
    text = str(source)
    if not _HUB_ID.match(text):
        raise FileNotFoundError(f"released model {source}: no such directory, and not a hub "
                                "repo id of the form owner/name")
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "tokenizer.model"]))
    # The hub cache names the snapshot directory after the commit it holds.
    return root, {"kind": "hub", "repo_id": text, "revision": root.name}


def _vocab(tokenizer_dir: Path) -> dict[str, int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=False).get_vocab()


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer.model"))


def choose_tokenizer(checkpoint_dir: Path, tokenizer_dir: Path | None) -> tuple[Path, str]:
    """(directory whose tokenizer files go into the export, which one it is)."""
    own = _has_tokenizer(checkpoint_dir)
    if tokenizer_dir is not None and not Path(tokenizer_dir).is_dir():
        raise FileNotFoundError(f"missing tokenizer directory: {tokenizer_dir}")
    if not own:
        if tokenizer_dir is None:
            raise FileNotFoundError(f"released model {checkpoint_dir} ships no tokenizer and no "
                                    "pipeline tokenizer directory was given")
        return Path(tokenizer_dir), "pipeline"
    if tokenizer_dir is not None and _vocab(checkpoint_dir) != _vocab(Path(tokenizer_dir)):
        raise ValueError(
            f"released model {checkpoint_dir}: its tokenizer differs from the pipeline's "
            f"({tokenizer_dir}); the token shards were made with the pipeline's, so set "
            "tokenizer.pretrained_name to the model's tokenizer")
    return checkpoint_dir, "checkpoint"


def check_shape(config, preset: str, what: str = "released model") -> None:
    """Raise ValueError when the converted config does not have the preset's shape."""
    from softpick_repro.model import build_config

    want = build_config(preset, config.attn_arm, config.vocab_size)
    diffs = [f"{f} {getattr(config, f)} (preset {getattr(want, f)})" for f in _SHAPE_FIELDS
             if getattr(config, f) != getattr(want, f)]
    if diffs:
        raise ValueError(f"{what} does not have the shape of its size's preset {preset!r}: "
                         + ", ".join(diffs))


def import_released(source: str | os.PathLike, tokenizer_dir: str | os.PathLike | None,
                    out_dir: str | os.PathLike, *, arm: str, preset: str, step: int,
                    extra: dict | None = None) -> Path:
    """Convert the released checkpoint `source` into the HF directory `out_dir`; return it."""
    from transformers import AutoTokenizer

    from softpick_repro.model import count_parameters, load_fla_checkpoint

    root, origin = fetch_checkpoint(source)
    model = load_fla_checkpoint(root)
    config = model.config
    if config.attn_arm != arm:
        impl = json.loads((root / "config.json").read_text()).get("attn_impl")
        raise ValueError(f"released model {source}: its attention is {config.attn_arm!r} "
                         f"(attn_impl {impl!r}), but the config lists it as arm {arm!r}")
    check_shape(config, preset, f"released model {source}")
    tok_dir, tok_origin = choose_tokenizer(root, Path(tokenizer_dir) if tokenizer_dir else None)
    n_ids = len(AutoTokenizer.from_pretrained(str(tok_dir), trust_remote_code=False))
    if n_ids > config.vocab_size:
        raise ValueError(f"released model {source}: the tokenizer ({tok_dir}) has {n_ids} ids but "
                         f"the model's vocabulary only {config.vocab_size}")
    weights = {f.name: sha256_file(f) for f in sorted(root.glob("*.safetensors"))}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_model_files(model, tmp)
        names = TOKENIZER_FILES if tok_origin == "checkpoint" else [p.name for p in tok_dir.iterdir()]
        for name in sorted(names):
            item = tok_dir / name
            if item.is_file() and name not in _OWN_FILES:
                shutil.copyfile(item, tmp / name)
        record = provenance(
            None, step=int(step), released=True, source=str(source), origin=origin,
            source_weights_sha256=weights, arm=arm, preset=preset,
            n_params=count_parameters(config), dtype=str(next(model.parameters()).dtype),
            tokenizer=tok_origin, tokenizer_dir=str(tok_dir),
            fla_config=json.loads((root / "config.json").read_text()), **(extra or {}))
        dump_json(record, tmp / "provenance.json")
    return out_dir


__all__ = ["choose_tokenizer", "check_shape", "fetch_checkpoint", "import_released"]
