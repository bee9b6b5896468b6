"""Corrupted files are caught before use, with the file named (issue 21, items 2 and 5)."""
import struct

import numpy as np
import pytest
import torch

from softpick_repro.config import ConfigError, load_yaml
from softpick_repro.integrity import IntegrityError, content_digest, verify_shard
from softpick_repro.model import SoftpickForCausalLM, build_config
from softpick_repro.model.llama_export import load_exported
from softpick_repro.train import train
from softpick_repro.train.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from softpick_repro.train.data import open_shard, read_manifest
from softpick_repro.train.export import export_hf, load_snapshot_model, save_model_files
from softpick_repro.train.synthetic import micro_train_config, write_synthetic_shards


def flip_bytes(path, offset, count):
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def safetensors_data_start(path):
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_len


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("data") / "tokens")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 64)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(out)
    return out


def test_content_digest_sees_values_dtypes_and_structure():
    base = {"a": torch.arange(6, dtype=torch.float32), "b": [1, 2.5, "x"]}
    same = {"b": [1, 2.5, "x"], "a": torch.arange(6, dtype=torch.float32)}
    assert content_digest(base) == content_digest(same)
    changed = {"a": torch.arange(6, dtype=torch.float32), "b": [1, 2.5, "y"]}
    assert content_digest(changed) != content_digest(base)
    as_double = {"a": torch.arange(6, dtype=torch.float64), "b": [1, 2.5, "x"]}
    assert content_digest(as_double) != content_digest(base)
    bf16 = torch.ones(3, dtype=torch.bfloat16)
    assert content_digest(bf16) != content_digest(bf16 * 2)


def _checkpoint_state(value=1.2345):
    return {"format_version": FORMAT_VERSION, "step": 3, "model": {"w": torch.full((4096,), value)},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
            "scheduler": {"last": 3}, "rng": {"torch": torch.get_rng_state()},
            "data_position": 12, "metrics_rows": 3, "train_config": {"lr": 0.1}}


def test_checkpoint_with_flipped_tensor_bytes_is_refused_naming_the_file(tmp_path):
    path = save_checkpoint(tmp_path, _checkpoint_state())
    assert load_checkpoint(path)["step"] == 3
    pattern = struct.pack("<f", 1.2345) * 64
    offset = path.read_bytes().index(pattern)
    flip_bytes(path, offset + 40, 64)  # 64 bytes inside the tensor data, as in the issue
    torch.load(path, weights_only=True)  # the zip container alone does not notice
    with pytest.raises(CheckpointError, match=rf"checkpoint file {path} is corrupt: its contents do "
                                              r"not match the content_sha256.*move or delete"):
        load_checkpoint(path)


def test_checkpoint_without_a_hash_is_refused(tmp_path):
    state = _checkpoint_state()
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)  # no content_sha256 inside
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def _micro_model():
    torch.manual_seed(0)
    return SoftpickForCausalLM(build_config("micro-s", "softpick", 64))


def test_export_with_flipped_bytes_is_refused_naming_the_file(tmp_path):
    save_model_files(_micro_model(), tmp_path)
    load_exported(tmp_path)  # intact: loads
    weights = tmp_path / "model.safetensors"
    flip_bytes(weights, safetensors_data_start(weights) + 1000, 256)
    with pytest.raises(IntegrityError, match=rf"{weights}: tensor contents do not match"):
        load_exported(tmp_path)


def test_truncated_export_names_the_file(tmp_path):
    save_model_files(_micro_model(), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(IntegrityError, match=rf"{weights} is not a readable safetensors file.*truncated"):
        load_exported(tmp_path)


def test_export_written_without_a_hash_is_refused(tmp_path):
    _micro_model().save_pretrained(tmp_path)  # transformers' own writer: no content hash
    with pytest.raises(IntegrityError, match="carries no content_sha256"):
        load_exported(tmp_path)


@pytest.fixture(scope="module")
def two_identical_runs(tokens_dir, tmp_path_factory):
    cfg = micro_train_config(steps=6, ckpt_every=3, keep_steps=[3], val_every=0)
    roots = []
    for name in ("a", "b"):
        root = tmp_path_factory.mktemp(name)
        train(dict(cfg), tokens_dir=tokens_dir, ckpt_dir=root / "ckpt", out_dir=root / "out",
              progress=False)
        roots.append(root)
    return roots


def test_identical_runs_give_byte_identical_weight_files(two_identical_runs, tokenizer_dir):
    a, b = two_identical_runs
    for name in ("final.safetensors", "step_3.safetensors"):
        assert (a / "out" / "weights" / name).read_bytes() == (b / "out" / "weights" / name).read_bytes()
    exports = [export_hf(root / "out" / "weights" / "final.safetensors", tokenizer_dir, root / "final")
               for root in (a, b)]
    assert (exports[0] / "model.safetensors").read_bytes() == (exports[1] / "model.safetensors").read_bytes()


def test_snapshot_with_flipped_bytes_is_refused(two_identical_runs, tmp_path):
    snapshot = tmp_path / "final.safetensors"
    snapshot.write_bytes((two_identical_runs[0] / "out" / "weights" / "final.safetensors").read_bytes())
    flip_bytes(snapshot, safetensors_data_start(snapshot) + 64, 32)
    with pytest.raises(IntegrityError, match=rf"{snapshot}: tensor contents do not match"):
        load_snapshot_model(snapshot)


def test_export_refuses_a_tokenizer_dir_without_tokenizer_json(two_identical_runs, tokenizer_dir, tmp_path):
    broken = tmp_path / "tokenizer"
    broken.mkdir()
    for item in tokenizer_dir.iterdir():
        if item.name != "tokenizer.json":
            (broken / item.name).write_bytes(item.read_bytes())
    snapshot = two_identical_runs[0] / "out" / "weights" / "final.safetensors"
    with pytest.raises(FileNotFoundError, match=rf"tokenizer directory {broken} lacks tokenizer.json"):
        export_hf(snapshot, broken, tmp_path / "final")
    assert not (tmp_path / "final").exists()


def test_all_zero_shard_of_the_right_size_is_refused(tmp_path):
    tokens = write_synthetic_shards(tmp_path / "tokens")
    train_bin = tokens / "train.bin"
    train_bin.write_bytes(bytes(train_bin.stat().st_size))
    with pytest.raises(IntegrityError, match=rf"{train_bin}: sha256 .* does not match .* manifest.json"):
        open_shard(tokens, "train")
    with pytest.raises(IntegrityError, match="train.bin"):
        train(micro_train_config(steps=4), tokens_dir=tokens, ckpt_dir=tmp_path / "ckpt",
              out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_truncated_shard_is_refused_naming_the_file(tmp_path):
    tokens = write_synthetic_shards(tmp_path / "tokens")
    train_bin = tokens / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-20])  # 10 uint16 tokens short
    with pytest.raises(ValueError, match=rf"{train_bin}: holds 19990 tokens but manifest.json says 20000"):
        open_shard(tokens, "train")


def test_shard_is_hashed_once_per_process(tmp_path, monkeypatch):
    import softpick_repro.integrity as integrity

    tokens = write_synthetic_shards(tmp_path / "tokens")
    manifest = read_manifest(tokens)
    calls = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        verify_shard(tokens / "val.bin", manifest["sha256"]["val"])
    assert len(calls) == 1
    # a rewrite (new size or mtime) is hashed again
    data = np.fromfile(tokens / "val.bin", dtype=np.uint16)
    data[:5] = 7
    data.tofile(tokens / "val.bin")
    with pytest.raises(IntegrityError):
        verify_shard(tokens / "val.bin", manifest["sha256"]["val"])


@pytest.mark.parametrize("text, message", [
    ("", r"is empty"),
    ("train:\n  lr: [1, 2\n  x: : y\n", r"is not valid YAML at line 3, column 4"),
    ("- just\n- a list\n", r"must hold a mapping"),
])
def test_broken_yaml_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file {path} {message}"):
        load_yaml(path)


def test_config_cli_names_a_broken_overlay(tmp_path, capsys):
    from softpick_repro.config import main

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("train:\n  lr: [1, 2\n")
    assert main(["config/config.yaml", str(overlay)]) == 1
    assert f"config file {overlay} is not valid YAML at line" in capsys.readouterr().err
    assert main(["config/config.yaml", "config/smoke.yaml"]) == 0
