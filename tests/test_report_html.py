"""The HTML report: verdicts first with colour, rounded numbers, the filtered comparison."""
import pandas as pd

from softpick_repro.report.html import VERDICT_COLOURS, caption_key, caption_text, write_report
from softpick_repro.report.tables import write_table


def make_inputs(tmp_path):
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame([
        {"claim": "1", "statement": "no sink", "verdict": "holds", "margin": 1.0, "evidence": "S: ok",
         "sizes": "micro-S (for 340M)", "seeds": 2},
        {"claim": "2", "statement": "no massive activations", "verdict": "not testable at this scale",
         "margin": float("nan"), "evidence": "baseline lacks the phenomenon: S: softmax kurtosis 4.1", "sizes": "", "seeds": 2},
        {"claim": "3", "statement": "sparse", "verdict": "does not hold", "margin": -12.3456, "evidence": "S: 60%",
         "sizes": "", "seeds": 2},
    ]).to_csv(tables / "claims.csv", index=False)
    pd.DataFrame({"table": ["table1", "table1"], "size": ["340M", "1.8B"], "arm": ["softmax"] * 2,
                  "task": ["sciq"] * 2, "metric": ["acc"] * 2, "quant_method": ["none"] * 2, "bits": ["", ""],
                  "paper_value": [83.2, 90.1], "run_value": [84.23456, 50.0], "comparable": [True, False],
                  "abs_diff": [1.03456, None], "rel_diff": [0.0124, None],
                  "reason": ["comparable", "model size: this run's micro-m stands in for 1.8B"]}
                 ).to_csv(tables / "paper_comparison.csv", index=False)
    write_table(pd.DataFrame({"task": ["sciq"], "softmax": ["51.00 ± 1.41"], "ppl": ["123.456789"]}),
                tables / "table01_benchmarks", "Table 1.")
    return [tables / "claims.csv", tables / "paper_comparison.csv", tables / "table01_benchmarks.csv"]


def test_verdicts_come_first_with_colour_and_the_sizes(tmp_path):
    out = write_report(make_inputs(tmp_path), [], {"run_label": "x"}, tmp_path / "results" / "report.html", "T")
    page = out.read_text()
    assert page.index("Verdicts on the paper's claims") < page.index("id='figures'") < page.index("id='tables'")
    for verdict in ("holds", "does not hold", "not testable at this scale"):
        assert f"background:{VERDICT_COLOURS[verdict]}'>{verdict}</span>" in page
    assert "micro-S (for 340M)" in page and "margin -12.3<" in page


def test_numbers_rounded_and_comparison_filtered_with_the_csv_linked(tmp_path):
    page = write_report(make_inputs(tmp_path), [], {}, tmp_path / "results" / "report.html", "T").read_text()
    assert "123.46" in page and "123.456789" not in page
    assert "51.00 ± 1.41" in page
    from softpick_repro.report.html import _round
    assert (_round("0.003"), _round("3e-4"), _round("0.10"), _round("200")) == ("0.003", "0.0003", "0.1", "200")
    comparison = page[page.index("id='comparison'"):]
    assert "2 published values, 1 comparable" in comparison
    assert "<a href='tables/paper_comparison.csv'>" in comparison
    assert "84.23" in comparison and "90.1" not in comparison  # the non-comparable row is left to the CSV


def test_captions_are_the_report_rst_files():
    assert caption_key("figure12_attention_maps_micro-s_softpick_text3") == "grid"
    assert caption_key("table09_quantization_gptq") == "table09"
    assert caption_text("table01_benchmarks").startswith("Zero-shot benchmark scores")
