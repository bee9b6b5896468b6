"""Table 6 and the training-curve figures from fixture metrics."""
import pandas as pd
import pytest

from softpick_repro.report.training import (plot_training_curves, read_metrics, seed_series,
                                           write_training_config_table)

TRAIN = {"global_batch": 128, "seq_len": 4096, "min_lr_ratio": 0.1, "betas": [0.9, 0.95],
         "adam_eps": 1e-15, "weight_decay": 0.1, "grad_clip": 1.0, "seed": 79}
SIZES = [{"name": "340m", "label": "340M", "steps": 100000, "lr": 3e-4, "warmup_steps": 1000},
         {"name": "1.8b", "label": "1.8B", "steps": 200000, "lr": 2e-4, "warmup_steps": 2000}]


def test_table6_paper_token_counts(tmp_path):
    paths = write_training_config_table(SIZES, TRAIN, {"340m": 340e6, "1.8b": 1.8e9}, tmp_path / "t6")
    frame = pd.read_csv(paths[0]).set_index("setting")
    # SOFTPICK.md: 52B and 104B tokens
    assert frame.loc["tokens", "340M"] == "52,428,800,000"
    assert frame.loc["tokens", "1.8B"] == "104,857,600,000"
    assert frame.loc["peak LR", "340M"] == "0.0003"
    assert all(p.stat().st_size > 0 for p in paths)


def write_metrics(path, losses):
    rows = [{"step": i + 1, "tokens": 100 * (i + 1), "loss": l, "grad_norm": 1.0, "lr": 1e-3,
             "tokens_per_s": 10.0, "skipped": 0} for i, l in enumerate(losses)]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_curves_written(tmp_path):
    write_metrics(tmp_path / "a.csv", [5, 4, 3])
    write_metrics(tmp_path / "b.csv", [5, 4.5, 3.5])
    outs = plot_training_curves({"S": {"softmax": tmp_path / "a.csv", "softpick": tmp_path / "b.csv"}},
                                tmp_path / "fig", "Figure 2")
    assert [p.suffix for p in outs] == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in outs)


def test_bad_metrics_named(tmp_path):
    (tmp_path / "m.csv").write_text("step,loss\n1,2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_metrics(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="missing training metrics"):
        read_metrics(tmp_path / "nope.csv")


def test_several_seeds_give_mean_and_band(tmp_path):
    write_metrics(tmp_path / "s79.csv", [5, 4, 3])
    write_metrics(tmp_path / "s80.csv", [7, 6, 5])
    joined = seed_series([tmp_path / "s79.csv", tmp_path / "s80.csv"], "loss")
    assert list(joined.mean(axis=1)) == [6, 5, 4] and list(joined.min(axis=1)) == [5, 4, 3]
    outs = plot_training_curves({"S": {"softmax": [tmp_path / "s79.csv", tmp_path / "s80.csv"]}},
                                tmp_path / "fig2", "Figure 2")
    assert all(p.stat().st_size > 1000 for p in outs)


def test_table6_names_a_constant_schedule_and_matrices_only_decay():
    from softpick_repro.report.training import training_config_table

    paper = training_config_table(SIZES, TRAIN, {}).set_index("setting")
    assert paper.loc["schedule", "340M"] == "linear warmup, cosine to 0.1 x LR"
    assert paper.loc["weight decay", "340M"] == "0.1"
    lab = training_config_table(SIZES, {**TRAIN, "min_lr_ratio": 1.0, "weight_decay_on": "matrices"}, {})
    lab = lab.set_index("setting")
    assert lab.loc["schedule", "340M"] == "linear warmup, then constant"
    assert lab.loc["weight decay", "340M"] == "0.1 (matrices only)"
