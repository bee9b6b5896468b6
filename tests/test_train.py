"""Trainer units and faults on a microscopic model: schedule, data order, outputs, NaN
skipping/abort, corrupt checkpoints, indivisible batches, export roundtrip."""
import csv
import math

import numpy as np
import pytest
import torch

from softpick_repro.train import (CheckpointError, TrainConfig, TrainingAborted, export_hf,
                                  load_snapshot_model, output_files, read_snapshot_metadata, train)
from softpick_repro.train.checkpoint import load_checkpoint
from softpick_repro.train.data import PackedWindows, WindowOrder, rank_slice, unigram_entropy
from softpick_repro.train.schedule import lr_at
from softpick_repro.train.synthetic import micro_train_config, write_synthetic_shards

NAN_ENV = "SOFTPICK_REPRO_TEST_NAN_STEPS"


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("data") / "tokens")


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def load_weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


# ----- schedule and data


def test_schedule_warmup_then_cosine_to_ten_percent():
    kw = dict(lr=1.0, warmup=10, total_steps=110)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert lr_at(109, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)
    decay = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_packing_order_and_rank_slices():
    tokens = np.arange(101, dtype=np.uint16)
    windows = PackedWindows(tokens, seq_len=10, vocab_size=200)
    assert windows.num_windows == 10
    batch = windows.batch([0, 9])
    assert batch.shape == (2, 11) and batch.dtype == torch.int64
    assert batch[0].tolist() == list(range(11)) and batch[1].tolist() == list(range(90, 101))
    with pytest.raises(ValueError, match="token id 100 >= vocab_size 50"):
        PackedWindows(tokens, 10, vocab_size=50).batch([9])

    order = WindowOrder(10, seed=5)
    first, second = order.windows(0, 10), order.windows(10, 10)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert list(first) != list(second)  # a fresh permutation per epoch
    assert list(WindowOrder(10, seed=5).windows(7, 6)) == list(first[7:]) + list(second[:3])

    # A global batch of 8 over 2 ranks x 2 micro-steps of 2 covers each sample exactly once.
    covered = []
    for rank in range(2):
        for micro in range(2):
            start, count = rank_slice(16, 8, 2, 2, 2, rank, micro)
            covered += list(range(start, start + count))
    assert sorted(covered) == list(range(16, 24))


def test_unigram_entropy_of_uniform_tokens():
    assert unigram_entropy(np.arange(64).repeat(3), 64) == pytest.approx(math.log(64))


# ----- bad input


def test_global_batch_that_does_not_divide_is_rejected_up_front(tokens_dir, tmp_path):
    cfg = TrainConfig.from_dict(micro_train_config(global_batch=6, micro_batch=4))
    with pytest.raises(ValueError, match="global batch 6 does not divide .* multiple of 4"):
        cfg.validate(world_size=1)
    cfg = TrainConfig.from_dict(micro_train_config(global_batch=6, micro_batch=2))
    assert cfg.validate(world_size=1) == 3
    with pytest.raises(ValueError, match="global batch 6 does not divide .* 2 process"):
        cfg.validate(world_size=2)
    with pytest.raises(ValueError, match="global batch 6"):
        train(micro_train_config(global_batch=6, micro_batch=4), tokens_dir=tokens_dir,
              ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "ckpt").exists()


def test_unknown_key_and_bad_keep_steps_are_rejected():
    with pytest.raises(ValueError, match="unknown training config keys \\['lr_peak'\\]"):
        TrainConfig.from_dict(micro_train_config(lr_peak=1.0))
    with pytest.raises(ValueError, match="keep_steps \\[30\\]"):
        TrainConfig.from_dict(micro_train_config(keep_steps=[5, 30])).validate()


# ----- a run and its outputs


@pytest.fixture(scope="module")
def finished_run(tokens_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cfg = micro_train_config(steps=30, keep_steps=[10, 20])
    summary = train(cfg, tokens_dir=tokens_dir, ckpt_dir=root / "ckpt", out_dir=root / "out",
                    progress=False)
    return root, cfg, summary


def test_run_learns_and_publishes_every_output(finished_run):
    root, cfg, summary = finished_run
    files = output_files(root / "out", cfg["keep_steps"])
    assert all(path.exists() for path in files.values()), files
    rows = read_rows(files["metrics"])
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert list(rows[0]) == ["step", "tokens", "loss", "grad_norm", "lr", "tokens_per_s", "skipped", "val_loss"]
    assert int(rows[-1]["tokens"]) == 30 * 4 * 32
    assert [r["step"] for r in rows if r["val_loss"]] == ["10", "20", "30"]
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert first == pytest.approx(math.log(64), abs=0.3)  # init std 0.006: near-uniform output
    assert summary["final_val_loss"] < summary["train_unigram_entropy"] < first
    assert summary["skipped_steps"] == 0 and summary["tokens_seen"] == 30 * 128
    assert float(rows[0]["lr"]) == pytest.approx(3e-3 / 3)
    meta = read_snapshot_metadata(files["step_10"])
    assert (meta["step"], meta["tokens_seen"], meta["arm"]) == (10, 1280, "softpick")
    assert last < first


def test_export_roundtrip_loads_with_auto_class_and_gives_same_logits(finished_run, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    import softpick_repro.model  # noqa: F401  registers the architecture

    root, cfg, summary = finished_run
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 64)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(tmp_path / "tokenizer")

    out = export_hf(root / "out" / "weights" / "final.safetensors", tmp_path / "tokenizer",
                    tmp_path / "final")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "provenance.json",
            "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    from softpick_repro.io import load_json

    prov = load_json(out / "provenance.json")
    assert prov["tokens_seen"] == summary["tokens_seen"] and prov["step"] == 30
    # wall-clock time stays out of snapshots (byte-identical reruns); summary.json has it
    assert "train_time_s" not in prov and len(prov["config_hash"]) == 16

    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    reference, _ = load_snapshot_model(root / "out" / "weights" / "final.safetensors")
    assert loaded.config.attn_arm == "softpick"
    ids = torch.tensor([[1, 5, 9, 33, 17, 4, 60, 61]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, reference(ids).logits, rtol=0, atol=0)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.bos_token_id == 1 and tok("w5 w9")["input_ids"][-2:] == [5, 9]


# ----- NaN steps


def test_nan_steps_are_skipped_and_counted(tokens_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(NAN_ENV, "4,5")
    cfg = micro_train_config(steps=8, keep_steps=[3, 5, 6], val_every=0)
    summary = train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out",
                    progress=False)
    rows = read_rows(tmp_path / "out" / "metrics.csv")
    assert [r["skipped"] for r in rows] == ["0", "0", "0", "1", "1", "0", "0", "0"]
    assert math.isnan(float(rows[3]["grad_norm"])) and math.isnan(float(rows[3]["loss"]))
    assert summary["skipped_steps"] == 2 and summary["last_step"] == 8
    w3, w5, w6 = (load_weights(tmp_path / "out" / "weights" / f"step_{k}.safetensors") for k in (3, 5, 6))
    assert all(torch.equal(w3[k], w5[k]) for k in w3)  # skipped steps leave the weights alone
    assert not all(torch.equal(w5[k], w6[k]) for k in w5)
    assert all(torch.isfinite(t).all() for t in w6.values())


def test_consecutive_nan_steps_abort_and_keep_last_good_checkpoint(tokens_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(NAN_ENV, "6,7,8")
    cfg = micro_train_config(steps=12, ckpt_every=5, max_consecutive_skips=3)
    with pytest.raises(TrainingAborted, match="aborted at step 8: 3 consecutive steps had a NaN/Inf "
                                              "gradient norm.*last good checkpoint .*checkpoint.pt"):
        train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out",
              progress=False)
    assert not (tmp_path / "out").exists()
    state = load_checkpoint(tmp_path / "ckpt" / "checkpoint.pt")
    assert state["step"] == 5 and state["skipped_total"] == 0
    assert all(torch.isfinite(t).all() for t in state["model"].values())

    # Without the fault the run resumes from step 5 and the CSV has no duplicate rows.
    monkeypatch.delenv(NAN_ENV)
    summary = train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out",
                    progress=False)
    rows = read_rows(tmp_path / "out" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert summary["resumed_from_steps"] == [5] and summary["skipped_steps"] == 0


def test_no_checkpoint_is_written_inside_a_non_finite_stretch(tokens_dir, tmp_path, monkeypatch):
    # Steps 7-11 are skipped; the checkpoint due at step 10 falls inside the stretch, so the
    # one on disk when the run aborts is step 5's, from before it (issue 21, item 5).
    monkeypatch.setenv(NAN_ENV, "7,8,9,10,11")
    cfg = micro_train_config(steps=12, ckpt_every=5, max_consecutive_skips=5)
    with pytest.raises(TrainingAborted, match=r"aborted at step 11.*last good checkpoint "
                                              r".*checkpoint.pt \(step 5, before the stretch, which began at step 7\)"):
        train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out",
              progress=False)
    assert load_checkpoint(tmp_path / "ckpt" / "checkpoint.pt")["step"] == 5


# ----- unusable checkpoints


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_a_clear_error_naming_the_file(tokens_dir, tmp_path, damage):
    cfg = micro_train_config(steps=5, ckpt_every=5, val_every=0)
    train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=None, progress=False)
    path = tmp_path / "ckpt" / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00not a checkpoint" * 50)
    with pytest.raises(CheckpointError, match=f"checkpoint file {path} is corrupt or truncated"):
        train(micro_train_config(steps=10, ckpt_every=5, val_every=0), tokens_dir=tokens_dir,
              ckpt_dir=tmp_path / "ckpt", out_dir=None, progress=False)
    assert path.read_bytes() != data and len(read_rows(tmp_path / "ckpt" / "metrics.csv")) == 5


def test_activation_checkpointing_gives_the_same_run(tokens_dir, tmp_path, monkeypatch):
    # recomputation must not change the numbers: same losses and bitwise-equal weights on CPU
    from softpick_repro.model.modeling import SoftpickDecoderLayer

    layer_calls = []
    forward = SoftpickDecoderLayer.forward
    monkeypatch.setattr(SoftpickDecoderLayer, "forward",
                        lambda self, *a, **k: layer_calls.append(1) or forward(self, *a, **k))
    cfg = micro_train_config(steps=6, ckpt_every=6, val_every=0)
    runs, calls = [], []
    for flag in (False, True):
        out = tmp_path / f"out_{flag}"
        layer_calls.clear()
        train({**cfg, "activation_checkpointing": flag}, tokens_dir=tokens_dir,
              ckpt_dir=tmp_path / f"ckpt_{flag}", out_dir=out, progress=False)
        calls.append(len(layer_calls))
        runs.append((read_rows(out / "metrics.csv"), load_weights(output_files(out, [])["final"])))
    assert calls[1] > calls[0], f"no layer was recomputed: {calls} decoder-layer calls"
    (rows_a, w_a), (rows_b, w_b) = runs
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_checkpoint_of_other_settings_is_refused(tokens_dir, tmp_path):
    cfg = micro_train_config(steps=5, ckpt_every=5, val_every=0)
    train(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=None, progress=False)
    with pytest.raises(CheckpointError, match="other settings \\(lr"):
        train({**cfg, "steps": 10, "lr": 1e-3}, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt",
              out_dir=None, progress=False)


# ----- weight-decay scope


def test_weight_decay_on_matrices_spares_embeddings_and_norm_gains(tokens_dir):
    from softpick_repro.train.data import read_manifest
    from softpick_repro.train.rundirs import run_key
    from softpick_repro.train.trainer import build_model, decay_groups

    cfg = TrainConfig.from_dict(micro_train_config(weight_decay_on="matrices"))
    cfg.validate()
    model = build_model(cfg, read_manifest(tokens_dir))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)   # Adam's update is then 0: only the decay moves weights
    torch.optim.AdamW(decay_groups(model, 0.5, "matrices"), lr=1.0).step()
    decayed = {name for name, p in model.named_parameters()
               if torch.allclose(p, 0.5 * before[name]) and before[name].abs().sum() > 0}
    kept = {name for name, p in model.named_parameters() if torch.equal(p, before[name])}
    assert kept | decayed == set(before)
    assert "model.embed_tokens.weight" in kept
    assert all(name in kept for name in before if "norm" in name)
    assert "lm_head.weight" in decayed
    assert any("q_proj" in name for name in decayed) and any("down_proj" in name for name in decayed)

    all_groups = decay_groups(model, 0.5, "all")
    assert len(all_groups) == 1 and len(all_groups[0]["params"]) == len(before)
    with pytest.raises(ValueError, match="weight_decay_on must be all\\|matrices"):
        TrainConfig.from_dict(micro_train_config(weight_decay_on="embeddings")).validate()
    # runs keyed before the field existed keep their checkpoint directory names
    base = micro_train_config()
    assert run_key(base) == run_key({**base, "weight_decay_on": "all"})
    assert run_key(base) != run_key({**base, "weight_decay_on": "matrices"})
