"""The training-step benchmark (train.throughput) on CPU: the accumulation loop and its checks."""
import math

import pytest
import torch

from softpick_repro.train import throughput


def _row(accumulation: int) -> dict:
    return throughput.measure("tiny-s", "softpick", seq_len=32, micro_batch=2, steps=2, warmup=1,
                              compile_model=False, device=torch.device("cpu"), vocab_size=512,
                              accumulation=accumulation)


def test_accumulation_counts_every_micro_batch_and_matches_one_big_step():
    one, two = _row(1), _row(2)
    assert (one["tokens_per_step"], two["tokens_per_step"]) == (64, 128)
    assert two["accumulation"] == 2 and math.isfinite(two["tokens_per_s"])
    # every micro-batch holds the same ids, so the averaged loss, and hence each update, is the
    # single micro-batch's: the two runs see the same losses step by step
    assert two["first_loss"] == pytest.approx(one["first_loss"], rel=1e-6)
    assert two["last_loss"] == pytest.approx(one["last_loss"], rel=1e-4)
    assert two["last_loss"] < two["first_loss"]


@pytest.mark.parametrize("flag", [["--accumulation", "0"], ["--steps", "0"]])
def test_bad_counts_are_refused_before_any_model_is_built(flag, capsys):
    with pytest.raises(SystemExit):
        throughput.main(["--preset", "tiny-s", *flag])
    assert "--accumulation and --steps must be >= 1" in capsys.readouterr().err
