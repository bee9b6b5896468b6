"""Pipeline entry points of the attention analyses: one exported model in, one file out.

- `run_attention_metrics`: the metrics JSON behind Tables 2 and 3 and Figures 1 (bottom)
  and 4, plus a sweep over sequence lengths.
- `run_attention_maps`: every layer's and head's map on the paper's three appendix texts
  (Figures 1 top, 5, 8-19), as one safetensors file (float32, lossless for fp16 maps).

`cfg` is the config's `metrics:` section (workflow/schemas/config.schema.yaml describes it).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from softpick_repro.analysis import attention_probe as probe
from softpick_repro.analysis import metric_text
from softpick_repro.analysis.texts import TEXTS
from softpick_repro.io import dump_json, provenance


def load_model(model_dir: str | Path, device: torch.device):
    """An exported HF directory -> (model on `device`, tokenizer); nothing is unpickled."""
    from transformers import AutoTokenizer

    from softpick_repro.model.llama_export import load_exported

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"not an exported model directory (no config.json): {model_dir}")
    model = load_exported(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{model_dir}: the tokenizer has {len(tokenizer)} ids but the model's "
                         f"vocabulary only {model.config.vocab_size}")
    return model.to(device).eval(), tokenizer


def metric_windows(cfg: dict, seq_len: int, num_samples: int, *, manifest: str | Path | None,
                   tokenizer=None):
    """The token windows of `cfg["text_source"]` (see `metric_text`)."""
    source = cfg["text_source"]
    if source == "val_shard":
        if manifest is None:
            raise ValueError("metrics.text_source=val_shard needs the token manifest")
        return metric_text.val_shard_windows(manifest, seq_len, num_samples)
    if source == "slimpajama":
        sp = cfg["slimpajama"]
        return metric_text.slimpajama_windows(tokenizer, seq_len, num_samples, name=sp["name"],
                                              config=sp["config"], split=sp["split"],
                                              text_column=sp.get("text_column", "text"),
                                              data_files=sp.get("data_files"))
    raise ValueError(f"unknown metrics.text_source {source!r} (val_shard | slimpajama)")


def run_attention_metrics(model_dir: str | Path, out_path: str | Path, cfg: dict, *,
                          manifest: str | Path | None = None, device: str = "auto",
                          meta: dict | None = None) -> dict:
    dev = probe.resolve_device(device)
    dtype = probe.resolve_dtype(cfg["dtype"], dev)
    model, tokenizer = load_model(model_dir, dev)
    windows, text_info = metric_windows(cfg, cfg["seq_len"], cfg["num_samples"],
                                        manifest=manifest, tokenizer=tokenizer)
    thresholds = tuple(cfg["sink_thresholds"])
    result = probe.measure(model, [windows], dtype, sink_thresholds=thresholds,
                           small=cfg["near_zero"], hidden_samples=cfg["hidden_samples"],
                           box_samples=cfg["box_samples"], progress=True)
    sweep = {}
    for seq_len in cfg["length_sweep"]:
        sweep[seq_len], _ = metric_windows(cfg, seq_len, cfg["sweep_samples"],
                                           manifest=manifest, tokenizer=tokenizer)
    result["length_sweep"] = probe.length_sweep(model, sweep, dtype, sink_thresholds=thresholds,
                                                small=cfg["near_zero"])
    result["text"] = text_info
    result["model_dir"] = str(model_dir)
    result.update(meta or {})
    result["provenance"] = provenance(cfg)
    dump_json(result, out_path)
    return result


def map_sequences(cfg: dict, tokenizer, manifest: str | Path | None = None) -> list[tuple[list[int], list[str]]]:
    """The three (ids, token labels) sequences of the maps, chosen by `cfg["map_text"]`.

    appendix: the paper's appendix texts 1-3; val_shard: the first three `map_len`-token
    windows of the validation shard that start at a document (synthetic data, where English
    text is all unknown symbols).
    """
    source = cfg.get("map_text", "appendix")
    if source == "appendix":
        return [metric_text.encode_text(tokenizer, text) for text in TEXTS]
    if source == "val_shard":
        if manifest is None:
            raise ValueError("metrics.map_text=val_shard needs the token manifest")
        windows, _ = metric_text.val_shard_windows(manifest, int(cfg["map_len"]), len(TEXTS))
        return [(row.tolist(), tokenizer.convert_ids_to_tokens(row.tolist())) for row in windows]
    raise ValueError(f"unknown metrics.map_text {source!r} (appendix | val_shard)")


def run_attention_maps(model_dir: str | Path, out_path: str | Path, cfg: dict, *,
                       device: str = "auto", meta: dict | None = None,
                       manifest: str | Path | None = None) -> Path:
    """Maps `[L, H, T, T]` of texts 1-3 (`map_sequences`) -> safetensors `text{k}` (+ `text{k}_ids`)."""
    from safetensors.torch import save_file

    dev = probe.resolve_device(device)
    dtype = probe.resolve_dtype(cfg["dtype"], dev)
    model, tokenizer = load_model(model_dir, dev)
    tensors, labels = {}, {}
    for number, (ids, tokens) in enumerate(map_sequences(cfg, tokenizer, manifest), start=1):
        tensors[f"text{number}"] = probe.attention_maps(model, ids, dtype).contiguous()
        tensors[f"text{number}_ids"] = torch.tensor(ids, dtype=torch.int64)
        labels[str(number)] = tokens
    metadata = {"format": "softpick_repro.attention_maps/1", "dtype": probe.dtype_name(dtype),
                "tokens": json.dumps(labels), "meta": json.dumps(meta or {}),
                "layout": "[layer, head, query, key], 0-based indices"}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def load_attention_maps(path: str | Path) -> tuple[dict[int, torch.Tensor], dict[int, list[str]], dict]:
    """Read `run_attention_maps` output: ({text: maps [L,H,T,T]}, {text: token labels}, metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing attention-map file: {path}")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        if meta.get("format") != "softpick_repro.attention_maps/1":
            raise ValueError(f"{path} is not an attention-map file (format {meta.get('format')!r})")
        maps = {int(k[4:]): handle.get_tensor(k) for k in handle.keys()
                if k.startswith("text") and not k.endswith("_ids")}
    tokens = {int(k): v for k, v in json.loads(meta["tokens"]).items()}
    return maps, tokens, {"dtype": meta.get("dtype"), **json.loads(meta.get("meta", "{}"))}
