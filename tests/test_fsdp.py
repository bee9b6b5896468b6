"""FSDP2 (`train.parallel: fsdp`): two gloo processes on CPU follow DDP's losses in fp32, and a
run stopped and resumed from its (gathered) checkpoint ends with the same tensors as one that
ran straight through."""
import pytest
import torch
from safetensors.torch import load_file

from softpick_repro.train import CheckpointError, compare_weight_files, launch
from softpick_repro.train.synthetic import micro_train_config
from train_fixtures import read_metrics as read, tokens_dir  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

# 20 steps, global batch 8 = 2 processes x 2 micro-steps of 2 sequences (accumulation exercised).
CFG = micro_train_config(steps=20, global_batch=8, micro_batch=2, ckpt_every=5, val_every=10,
                         precision="fp32", keep_steps=[10])
# The bound: the same losses to 1e-6 (relative). FSDP reduce-scatters where DDP
# all-reduces, so the float sums may run in another order.
LOSS_RTOL = 1e-6


def run(cfg, tokens_dir, root, name):
    return launch(cfg, tokens_dir=tokens_dir, ckpt_dir=root / f"c_{name}", out_dir=root / f"o_{name}",
                  nproc=2, progress=False)


def test_fsdp_matches_ddp_and_resumes_bitwise(tokens_dir, tmp_path):
    ddp = run({**CFG, "parallel": "ddp"}, tokens_dir, tmp_path, "ddp")
    fsdp = run({**CFG, "parallel": "fsdp"}, tokens_dir, tmp_path, "fsdp")
    assert (fsdp["world_size"], fsdp["accum"]) == (2, 2)
    one, two = read(tmp_path / "o_ddp"), read(tmp_path / "o_fsdp")
    assert [r["step"] for r in two] == [str(s) for s in range(1, 21)]
    for a, b in zip(one, two):
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=LOSS_RTOL, abs=0), a["step"]
    assert fsdp["final_val_loss"] == pytest.approx(ddp["final_val_loss"], rel=LOSS_RTOL)
    assert float(one[-1]["loss"]) < float(one[0]["loss"]) - 0.5  # the curve moved
    # The published weights are full (gathered) tensors of the model's own shapes.
    final = load_file(str(tmp_path / "o_fsdp" / "weights" / "final.safetensors"))
    ref = load_file(str(tmp_path / "o_ddp" / "weights" / "final.safetensors"))
    assert {k: v.shape for k, v in final.items()} == {k: v.shape for k, v in ref.items()}
    # Close, not equal: AdamW's eps of 1e-15 turns ulp-level gradient differences of near-zero
    # gradients into visible update differences; a wrong shard layout would be off by O(1).
    worst = max(float((final[k] - ref[k]).abs().max()) for k in ref)
    assert worst < 1e-3, worst

    # Stop at step 12 (a checkpoint is written at the last step of a run), then resume to 20.
    run({**CFG, "parallel": "fsdp", "stop_at_step": 12}, tokens_dir, tmp_path, "resumed")
    resumed = run({**CFG, "parallel": "fsdp"}, tokens_dir, tmp_path, "resumed")
    assert resumed["resumed_from_steps"] == [12]
    assert compare_weight_files(tmp_path / "o_resumed" / "weights", tmp_path / "o_fsdp" / "weights") == []
    assert [r["loss"] for r in read(tmp_path / "o_resumed")] == [r["loss"] for r in two]

    # Its checkpoint is refused by a DDP run (other optimizer-state layout), with a clear error.
    with pytest.raises(CheckpointError, match="parallel"):
        launch({**CFG, "parallel": "ddp"}, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "c_fsdp",
               out_dir=tmp_path / "o_x", nproc=1, progress=False)


def test_unknown_parallel_mode_is_refused(tokens_dir, tmp_path):
    with pytest.raises(ValueError, match="parallel must be ddp|fsdp"):
        launch({**CFG, "parallel": "zero3"}, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "c",
               out_dir=tmp_path / "o", nproc=2, progress=False)
