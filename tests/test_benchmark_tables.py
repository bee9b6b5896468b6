"""Benchmark tables (1, 7, 8-13) and Figure 3 from fixture evaluation JSONs, including
"nan"/"inf" values that must survive the JSON round trip into the tables."""
from __future__ import annotations

import math

import pytest

from softpick_repro.io import dump_json
from softpick_repro.report.benchmark_tables import (benchmark_table_stems, load_eval_records,
                                                    quant_frame, table1_frame, table7_frame,
                                                    write_benchmark_tables)
from softpick_repro.report.figure_quantization import write_figure03

SIZES = [{"name": "tiny-s", "label": "tiny-S", "paper_size": "340M"},
         {"name": "tiny-m", "label": "tiny-M", "paper_size": "1.8B"}]
RUNS = {"main_arms": ["softmax", "softpick"], "appendix_arms": ["rectified"],
        "variant_arms": [], "variant_fraction": 0.1}
METHODS = {"hqq": [2, 3], "bnb": [4], "gptq": []}


def _record(size, arm, quant, acc, ppl):
    return {"size": size, "arm": arm, "quant": quant, "tasks": {
        "social_iqa": {"kind": "multiple_choice", "stands_in_for": "arc_easy",
                       "metrics": {"acc": acc, "acc_stderr": 0.01, "acc_norm": acc / 2}},
        "narrative_cloze": {"kind": "cloze", "stands_in_for": "lambada_openai",
                            "metrics": {"acc": acc, "perplexity": ppl}},
        "wiki_ppl": {"kind": "perplexity", "stands_in_for": "wikitext",
                     "metrics": {"word_perplexity": ppl * 2, "byte_perplexity": 1.5,
                                 "bits_per_byte": 0.6}},
    }}


@pytest.fixture()
def eval_files(tmp_path):
    paths = []

    def add(size, arm, quant, acc, ppl):
        path = tmp_path / size / arm / f"{quant}.json"
        dump_json(_record(size, arm, quant, acc, ppl), path)
        paths.append(path)

    for size in ("tiny-s", "tiny-m"):
        add(size, "softmax", "none", 0.5, 20.0)
        add(size, "softpick", "none", 0.5125, 18.5)
        for quant, acc_sm, ppl_sm, acc_sp, ppl_sp in (
                ("hqq2", 0.25, math.inf, 0.4, 40.0),
                ("hqq3", math.nan, 30.0, 0.45, 25.0),
                ("bnb4", 0.49, 21.0, 0.5, 19.0)):
            add(size, "softmax", quant, acc_sm, ppl_sm)
            add(size, "softpick", quant, acc_sp, ppl_sp)
    add("tiny-s", "rectified", "none", 0.3333, 50.0)
    return paths


def test_records_roundtrip_nan_inf(eval_files):
    frame = load_eval_records(eval_files)
    row = frame[(frame["size"] == "tiny-s") & (frame.arm == "softmax") & (frame.quant == "hqq2")
                & (frame.metric == "perplexity")]
    assert math.isinf(row.value.iloc[0])
    nan_row = frame[(frame.quant == "hqq3") & (frame.arm == "softmax") & (frame.metric == "acc")]
    assert nan_row.value.map(math.isnan).all()
    assert set(frame.metric) == {"acc", "acc_norm", "perplexity", "word_perplexity"}
    assert set(frame.method.dropna()) == {"hqq", "bnb"}


def test_table1_layout_and_values(eval_files):
    table = table1_frame(load_eval_records(eval_files), [("tiny-s", "tiny-S"), ("tiny-m", "tiny-M")])
    assert list(table.columns) == ["task", "metric", "tiny-S softmax", "tiny-S softpick",
                                   "tiny-S Delta", "tiny-M softmax", "tiny-M softpick",
                                   "tiny-M Delta"]
    assert list(zip(table.task, table.metric)) == [
        ("social_iqa (arc_easy)", "acc"), ("social_iqa (arc_easy)", "acc_norm"),
        ("narrative_cloze (lambada_openai)", "acc"),
        ("narrative_cloze (lambada_openai)", "perplexity"),
        ("wiki_ppl (wikitext)", "word_perplexity")]
    first = table.iloc[0]
    assert (first["tiny-S softmax"], first["tiny-S softpick"], first["tiny-S Delta"]) == \
        ("50.00", "51.25", "1.25")
    ppl = table.iloc[3]  # perplexities are not scaled
    assert (ppl["tiny-S softmax"], ppl["tiny-S softpick"], ppl["tiny-S Delta"]) == \
        ("20.00", "18.50", "-1.50")
    assert table.iloc[4]["tiny-M softmax"] == "40.00"


def test_quant_tables_show_nan_inf(eval_files):
    frame = load_eval_records(eval_files)
    table = quant_frame(frame, "tiny-s", "hqq", [2, 3])
    assert list(table.columns)[2:] == ["2-bit softmax", "2-bit softpick", "2-bit Delta",
                                       "3-bit softmax", "3-bit softpick", "3-bit Delta"]
    ppl = table[table.metric == "perplexity"].iloc[0]
    assert ppl["2-bit softmax"] == "inf" and ppl["2-bit Delta"] == "-inf"
    acc = table[table.metric == "acc"].iloc[0]
    assert acc["3-bit softmax"] == "nan" and acc["3-bit Delta"] == "nan"
    assert acc["2-bit Delta"] == "15.00"
    # a width the config does not produce is absent; asking for it alone is an error
    assert "8-bit softmax" not in quant_frame(frame, "tiny-s", "hqq", [2, 3, 8]).columns
    with pytest.raises(ValueError):
        quant_frame(frame, "tiny-s", "gptq", [4])


def test_table7_has_every_arm(eval_files):
    table = table7_frame(load_eval_records(eval_files), "tiny-s", ["softmax", "softpick", "rectified"])
    assert list(table.columns) == ["task", "metric", "softmax", "softpick", "rectified"]
    assert table.iloc[0]["rectified"] == "33.33"


def test_table_stems_follow_paper_numbering():
    stems = benchmark_table_stems(SIZES, RUNS, METHODS)
    assert set(stems) == {"table01_benchmarks", "table07_benchmarks_appendix",
                          "table08_quantization_bnb", "table10_quantization_hqq",
                          "table11_quantization_bnb", "table13_quantization_hqq"}
    assert ("tiny-m", "softpick", "hqq3") in stems["table13_quantization_hqq"]["inputs"]
    no_appendix = {**RUNS, "appendix_arms": []}
    assert "table07_benchmarks_appendix" not in benchmark_table_stems(SIZES, no_appendix, METHODS)
    with pytest.raises(ValueError, match="same paper size"):
        benchmark_table_stems([SIZES[0], {**SIZES[1], "paper_size": "340M"}], RUNS, METHODS)


def test_write_tables_and_figure(eval_files, tmp_path):
    out = tmp_path / "tables"
    written = write_benchmark_tables(eval_files, SIZES, RUNS, METHODS, out)
    assert len(written) == 6 * 3
    md = (out / "table10_quantization_hqq.md").read_text()
    assert "inf" in md and "nan" in md and "tiny-S" in md
    tex = (out / "table01_benchmarks.tex").read_text()
    assert r"\begin{tabular}" in tex and "51.25" in tex
    csv = (out / "table13_quantization_hqq.csv").read_text().splitlines()
    assert csv[0].startswith("task,metric,2-bit softmax")
    figs = write_figure03(eval_files, SIZES, METHODS, tmp_path / "fig" / "figure03_quantization")
    assert [p.suffix for p in figs] == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in figs)
    assert figs[1].read_bytes()[:4] == b"\x89PNG"


def test_figure03_draws_several_seeds_as_mean_and_error_bars(eval_files, tmp_path):
    figs = write_figure03(list(eval_files) * 2, SIZES, METHODS, tmp_path / "fig" / "figure03_two_seeds")
    assert [p.suffix for p in figs] == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in figs)
