"""`train.tensorboard: true` writes loss, LR, grad norm, tokens/s and validation loss as
TensorBoard scalars beside the run state; off by default; rank 0 only."""
import pytest

from softpick_repro.train import train
from softpick_repro.train.synthetic import micro_train_config, write_synthetic_shards

pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CFG = micro_train_config(steps=6, ckpt_every=3, val_every=3)


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("data") / "tokens")


def scalars(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_log_matches_metrics_and_survives_a_resume(tokens_dir, tmp_path):
    train({**CFG, "tensorboard": True, "stop_at_step": 4}, tokens_dir=tokens_dir,
          ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out", progress=False)
    summary = train({**CFG, "tensorboard": True}, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt",
                    out_dir=tmp_path / "out", progress=False)
    assert summary["resumed_from_steps"] == [4]
    logged = scalars(tmp_path / "ckpt" / "tensorboard")
    assert set(logged) == {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss"}
    rows = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(dict(zip(header, r.split(",")))["loss"]) for r in rows[1:]]
    # one event per step even though steps 1-4 ran before the resume (purge_step)
    assert [s for s, _ in logged["train/loss"]] == list(range(1, 7))
    assert [v for _, v in logged["train/loss"]] == pytest.approx(losses, rel=1e-6)
    assert [s for s, _ in logged["val/loss"]] == [3, 4, 6]  # every val_every and each run's last step


def test_off_by_default(tokens_dir, tmp_path):
    train(CFG, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "ckpt" / "tensorboard").exists()
