"""Attention metrics: each definition on inputs whose answer is known by hand, the streaming
accumulators against one-shot computations, the window selection, and the probe on a micro
random model (streamed results equal a direct computation on the same forward)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from softpick_repro.analysis import metric_text
from softpick_repro.analysis.metrics import (HiddenStateStats, MomentAccumulator,
                                             SinkRateAccumulator, SparsityAccumulator, box_stats,
                                             causal_zero_counts, first_token_mass,
                                             pearson_kurtosis, sink_rate, sparsity)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- sink rate
def _maps_with_alpha(alphas, t=8, batch=1):
    """Causal maps [B, H, T, T] whose column 0 is constant alpha_h, so mean_t A[t, 0] = alpha_h."""
    h = len(alphas)
    maps = torch.zeros(batch, h, t, t)
    for i, a in enumerate(alphas):
        maps[:, i] = torch.tril(torch.full((t, t), (1 - a) / t))
        maps[:, i, :, 0] = a
    return maps


def test_sink_rate_counts_known_heads():
    # per layer: alphas 0.1, 0.25, 0.35, 0.9 -> sinks at 0.2: 3 of 4, at 0.3: 2 of 4
    layer0 = _maps_with_alpha([0.1, 0.25, 0.35, 0.9], batch=2)
    layer1 = _maps_with_alpha([0.05, 0.05, 0.05, 0.5], batch=2)   # 1 of 4 at both
    assert sink_rate([layer0, layer1], 0.2) == pytest.approx(100 * (3 + 1) / 8)
    assert sink_rate([layer0, layer1], 0.3) == pytest.approx(100 * (2 + 1) / 8)
    acc = SinkRateAccumulator(thresholds=(0.2, 0.3))
    acc.update(layer0, 0)
    acc.update(layer1, 1)
    res = acc.result()
    assert res["sink_rate_eps0.2"] == pytest.approx(50.0)
    assert res["sink_rate_eps0.3"] == pytest.approx(37.5)
    assert res["sink_rate_per_layer"]["0.3"] == pytest.approx([50.0, 25.0])
    assert res["sink_triples"] == 16
    assert res["mean_first_token_mass"][0] == pytest.approx([0.1, 0.25, 0.35, 0.9])


def test_sink_alpha_includes_first_query_and_is_strict():
    t = 4
    m = torch.zeros(1, 1, t, t)
    m[0, 0, 0, 0] = 1.0            # query 0 can only see key 0
    m[0, 0, 1:, 0] = 0.2
    # with t = 0 included alpha = (1 + 3 * 0.2) / 4 = 0.4; without it would be 0.2
    assert first_token_mass(m).item() == pytest.approx(0.4)
    assert sink_rate([m], 0.3) == 100.0
    exact = _maps_with_alpha([0.25])   # exactly representable: alpha == eps is not a sink
    assert sink_rate([exact], 0.25) == 0.0


def test_sink_rate_rejects_non_square_maps():
    with pytest.raises(ValueError, match=r"\[B, H, T, T\]"):
        first_token_mass(torch.zeros(1, 1, 3, 4))


# ----------------------------------------------------------------------------- kurtosis
def test_kurtosis_hand_example():
    # x = (0, 0, 0, 0, 4): mu2 = 2.56, mu4 = 21.2992 -> 3.25 exactly
    x = torch.tensor([0.0, 0.0, 0.0, 0.0, 4.0])
    assert pearson_kurtosis(x) == pytest.approx(3.25, rel=1e-12)
    assert MomentAccumulator().update(x).kurtosis == pytest.approx(3.25, rel=1e-12)
    assert MomentAccumulator().update(torch.tensor([-1.0, 1.0] * 8)).kurtosis == pytest.approx(1.0)
    overflow = MomentAccumulator().update(torch.tensor([1.0, 2.0], dtype=torch.float16))
    overflow.update(torch.tensor([70000.0, 1.0]).half())          # fp16 overflow -> inf
    assert overflow.nonfinite == 1 and math.isnan(overflow.kurtosis) and overflow.n == 4


@pytest.mark.parametrize("dist,expected,tol", [("normal", 3.0, 0.03), ("uniform", 1.8, 0.01),
                                               ("laplace", 6.0, 0.15)])
def test_kurtosis_known_distributions(dist, expected, tol):
    rng = np.random.default_rng(0)
    x = {"normal": lambda: rng.standard_normal(1_000_000),
         "uniform": lambda: rng.uniform(-1, 1, 1_000_000),
         "laplace": lambda: rng.laplace(0, 1, 1_000_000)}[dist]()
    acc = MomentAccumulator()
    for chunk in np.array_split(x, 37):
        acc.update(torch.from_numpy(chunk).float())
    assert acc.kurtosis == pytest.approx(expected, abs=tol)
    assert pearson_kurtosis(x) == pytest.approx(expected, abs=tol)


def test_streaming_equals_one_shot_and_survives_large_mean():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(5000) * 3, rng.standard_t(3, 3000) * 50 + 7])
    sizes = rng.integers(1, 400, size=60)
    parts = np.split(x, np.cumsum(sizes)[np.cumsum(sizes) < x.size])
    acc = MomentAccumulator()
    for p in parts:
        acc.update(torch.from_numpy(p))
    assert acc.n == x.size
    assert acc.kurtosis == pytest.approx(pearson_kurtosis(x), rel=1e-10)
    assert acc.variance == pytest.approx(x.var(), rel=1e-10)
    assert (acc.min, acc.max) == (x.min(), x.max())
    # a mean 1e6 std away: raw power sums would cancel catastrophically in float64
    shifted = MomentAccumulator()
    for p in parts:
        shifted.update(torch.from_numpy(p + 1e6))
    assert shifted.kurtosis == pytest.approx(pearson_kurtosis(x), rel=1e-6)


def test_hidden_state_stats_over_tuple():
    rng = np.random.default_rng(2)
    states = [torch.from_numpy(rng.standard_normal((1, 5, 8))).float() for _ in range(3)]
    states[1][0, 2, 3] = -250.0
    states[2][0, 4, 1] = 120.0
    stats = HiddenStateStats()
    stats.update(tuple(s[:, :3] for s in states))
    stats.update(tuple(s[:, 3:] for s in states))
    res = stats.result()
    flat = torch.cat([s.reshape(-1) for s in states])
    assert res["kurtosis"] == pytest.approx(pearson_kurtosis(flat), rel=1e-10)
    assert res["min_activation"] == -250.0 and res["max_activation"] == 120.0
    assert res["max_abs_per_layer"][1] == 250.0 and res["max_abs_per_layer"][2] == 120.0
    assert res["num_scalars"] == flat.numel()
    with pytest.raises(ValueError, match="hidden states"):
        stats.update(tuple(states[:2]))


def test_hidden_state_stats_keep_first_token_peaks_apart():
    states = [torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)]
    states[0][0, 0, 1] = -9.0    # first token, entry 0
    states[0][0, 2, 0] = 2.0
    states[1][0, 3, 2] = 7.0     # another token, entry 1
    stats = HiddenStateStats()
    stats.update(tuple(states))
    stats.update(tuple(s * 0.5 for s in states))   # a second sequence: the maxima stay
    res = stats.result()
    assert res["first_token_max_abs_per_layer"] == [9.0, 0.0]
    assert res["other_tokens_max_abs_per_layer"] == [2.0, 7.0]


# ----------------------------------------------------------------------------- sparsity
def test_sparsity_counts_causal_triangle_only():
    t = 4
    m = torch.full((t, t), 0.5)
    m = m.triu(1) * 0 + m.tril()         # upper triangle: 6 zeros that must be ignored
    m[1, 0] = 0.0
    m[2, 1] = -0.0                       # negative zero is an exact zero
    m[3, 3] = 0.0
    m[3, 0] = 1e-6                       # near zero, not exact
    m[2, 2] = 1e-5                       # at the near-zero threshold (inclusive)
    maps = m.expand(2, 3, t, t).clone()  # 2 samples x 3 heads
    zeros, tiny, total = causal_zero_counts(maps)
    assert total == 2 * 3 * 10
    assert zeros == 2 * 3 * 3
    assert tiny == 2 * 3 * 5
    assert sparsity([maps, maps.half()]) == pytest.approx(30.0)
    acc = SparsityAccumulator()
    acc.update(maps, 0)
    acc.update(torch.ones(1, 3, t, t).tril(), 1)
    res = acc.result()
    assert res["sparsity_pct"] == pytest.approx(100 * 18 / 90)
    assert res["near_zero_pct"] == pytest.approx(100 * 30 / 90)
    assert res["sparsity_pct_per_layer"] == pytest.approx([30.0, 0.0])


# ----------------------------------------------------------------------------- box plots
def test_box_stats_match_matplotlib():
    from matplotlib.cbook import boxplot_stats

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(2000), [40.0, -35.0, 60.0]])
    ours = box_stats(torch.from_numpy(x), max_fliers=5)
    ref = boxplot_stats(x)[0]
    for key in ("q1", "med", "q3", "whislo", "whishi"):
        assert ours[key] == pytest.approx(float(ref[key]), rel=1e-12)
    assert ours["n_fliers"] == len(ref["fliers"])
    assert {60.0, 40.0, -35.0} <= set(ours["fliers"]) and len(ours["fliers"]) == 5


# ----------------------------------------------------------------------------- windows
def test_select_windows_prefers_full_documents():
    bos = 1
    docs = [[bos] + [5] * 9, [bos] + [6] * 2, [bos] + [7] * 19, [bos] + [8] * 3, [bos] + [9] * 6]
    tokens = np.concatenate([np.asarray(d, dtype=np.uint16) for d in docs])
    windows, info = metric_text.select_windows(tokens, bos, 8, 2)
    assert windows.shape == (2, 8) and windows.dtype == np.int64
    assert info["full_documents"] == 2 and info["packed_windows"] == 0
    assert sorted(windows[:, 1].tolist()) == [5, 7]           # the two documents >= 8 tokens
    windows, info = metric_text.select_windows(tokens, bos, 8, 4)
    assert (windows[:, 0] == bos).all()
    assert info["full_documents"] == 2 and info["packed_windows"] == 2
    again, _ = metric_text.select_windows(tokens, bos, 8, 4)
    assert np.array_equal(windows, again)
    with pytest.raises(metric_text.MetricTextError, match="num_samples"):
        metric_text.select_windows(tokens, bos, 8, 6)
    with pytest.raises(metric_text.MetricTextError, match="BOS"):
        metric_text.select_windows(tokens, 3, 8, 1)


# ----------------------------------------------------------------------------- probe
@pytest.fixture(scope="module")
def micro_models():
    from softpick_repro.model import SoftpickForCausalLM, build_config

    torch.manual_seed(0)
    return {arm: SoftpickForCausalLM(build_config("micro-s", arm, 320, initializer_range=0.2))
            for arm in ("softmax", "softpick")}


def _ids(n=3, t=24, seed=0):
    ids = np.random.default_rng(seed).integers(3, 300, size=(n, t))
    ids[:, 0] = 1
    return ids


def test_probe_streams_what_a_direct_forward_gives(micro_models):
    from softpick_repro.analysis.attention_probe import measure

    model = micro_models["softpick"]
    ids = _ids()
    res = measure(model, [ids[:2], ids[2]], torch.float32, box_samples=1)
    with torch.no_grad():
        outs = [model(torch.as_tensor(row[None]), output_attentions=True,
                      output_hidden_states=True) for row in ids]
    hidden = torch.cat([h.reshape(-1) for o in outs for h in o.hidden_states])
    assert res["num_samples"] == 3 and res["seq_len"] == 24 and res["dtype"] == "float32"
    assert res["num_layers"] == 2 and res["num_heads"] == 2
    assert res["kurtosis"] == pytest.approx(pearson_kurtosis(hidden), rel=1e-9)
    assert res["min_activation"] == pytest.approx(hidden.min().item())
    assert res["max_activation"] == pytest.approx(hidden.max().item())
    per_layer = [torch.cat([o.attentions[l] for o in outs]) for l in range(2)]
    assert res["sink_rate_eps0.2"] == pytest.approx(sink_rate(per_layer, 0.2))
    assert res["sparsity_pct"] == pytest.approx(sparsity(per_layer))
    assert 0.0 < res["sparsity_pct"] < 100.0          # softpick: exact zeros from scores <= 0
    assert len(res["box_stats"]) == len(outs[0].hidden_states) == 3
    assert json.dumps(res, allow_nan=False)            # plain JSON-able, all finite


def test_probe_softmax_fp32_has_no_zeros_and_sweeps(micro_models):
    from softpick_repro.analysis.attention_probe import attention_maps, length_sweep, measure

    res = measure(micro_models["softmax"], [_ids(2, 32)], torch.float32, hidden_samples=1)
    assert res["sparsity_pct"] == 0.0 and res["hidden_samples"] == 1
    for key in ("kurtosis", "min_activation", "max_activation", "sink_rate_eps0.3"):
        assert math.isfinite(res[key])
    rows = length_sweep(micro_models["softmax"], {16: _ids(2, 16), 32: _ids(2, 32)},
                        torch.float32)
    assert [r["seq_len"] for r in rows] == [16, 32]
    maps = attention_maps(micro_models["softpick"], _ids(1, 10)[0], torch.float32)
    assert maps.shape == (2, 2, 10, 10) and maps.dtype == torch.float32
    assert torch.all(maps.triu(1) == 0)


def test_probe_runs_in_half_precision(micro_models):
    import copy

    from softpick_repro.analysis.attention_probe import measure

    model = copy.deepcopy(micro_models["softpick"])
    res = measure(model, [_ids(1, 16)], torch.bfloat16)
    assert res["dtype"] == "bfloat16" and math.isfinite(res["kurtosis"])


def test_run_functions_on_an_exported_model(micro_models, tmp_path):
    """Export dir + token manifest -> metrics JSON and map file, through the pipeline entry."""
    from softpick_repro.analysis.attention_run import (load_attention_maps, run_attention_maps,
                                                       run_attention_metrics)
    from softpick_repro.io import dump_json, load_json, sha256_file
    from softpick_repro.train.export import save_model_files
    from softpick_repro.tokenize import train_bpe_tokenizer

    corpus = ["the bee flies over the green grass and the blue sky " * 3,
              "attention maps of a model with sequence transduction " * 3] * 20
    train_bpe_tokenizer(corpus, 300, 1, tmp_path / "tok")  # <= the model's 320 ids
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    model_dir = tmp_path / "model"
    model = micro_models["softmax"]
    save_model_files(model, model_dir)  # the pipeline's writer: weights carry their content hash
    tok.save_pretrained(model_dir)
    ids = _ids(6, 40, seed=4).astype(np.uint16)
    (tmp_path / "data").mkdir()
    ids.reshape(-1).tofile(tmp_path / "data" / "val.bin")
    dump_json({"dtype": "uint16", "bos_id": 1, "files": {"val": "val.bin"},
               "sha256": {"val": sha256_file(tmp_path / "data" / "val.bin")}},
              tmp_path / "data" / "manifest.json")
    cfg = {"text_source": "val_shard", "seq_len": 32, "num_samples": 4, "hidden_samples": 0,
           "box_samples": 1, "dtype": "auto", "sink_thresholds": [0.2, 0.3], "near_zero": 1e-5,
           "length_sweep": [16], "sweep_samples": 2}
    out = tmp_path / "m.json"
    run_attention_metrics(model_dir, out, cfg, manifest=tmp_path / "data" / "manifest.json",
                          device="cpu", meta={"arm": "softmax"})
    rec = load_json(out)
    assert rec["num_samples"] == 4 and rec["arm"] == "softmax" and rec["dtype"] == "float32"
    assert rec["text"]["full_documents"] == 4 and len(rec["length_sweep"]) == 1
    maps_path = run_attention_maps(model_dir, tmp_path / "maps.safetensors", cfg, device="cpu")
    maps, tokens, meta = load_attention_maps(maps_path)
    assert sorted(maps) == [1, 2, 3] and meta["dtype"] == "float32"
    for k in (1, 2, 3):
        assert maps[k].shape[:2] == (2, 2) and maps[k].shape[2] == len(tokens[k])
        assert tokens[k][0] == "<s>"
