"""Paper comparison on fixture results labelled 340m; the claim rules on the paper's own published values."""
import copy

import pandas as pd
import pytest

from softpick_repro.config import REPO_ROOT, load_config
from softpick_repro.io import dump_json
from softpick_repro.report.claims import FAILS, HOLDS, NOT_MEASURED, NOT_TESTABLE, ClaimInputs, evaluate_claims
from softpick_repro.report.claims import main as claims_main
from softpick_repro.report.published_claims import published_inputs
from softpick_repro.report.scorecard import parse_entry
from softpick_repro.report.comparison import compare, load_published
from softpick_repro.report.run_values import RunInfo, attention_rows, collect, eval_rows, passkey_rows

PUBLISHED = REPO_ROOT / "data" / "paper" / "published_values.csv"


def eval_json(path, task="sciq", stands_in_for=None, acc=0.832, ppl=None):
    metrics = {"acc": acc, "acc_norm": 0.749, "acc_stderr": 0.01}
    tasks = {task: {"stands_in_for": stands_in_for, "metrics": metrics}}
    if ppl is not None:
        tasks["wikitext"] = {"stands_in_for": None, "metrics": {"word_perplexity": ppl}}
    dump_json({"tasks": tasks}, path)
    return path


def test_comparable_path_at_paper_size(tmp_path):
    path = eval_json(tmp_path / "e.json", acc=0.842, ppl=float("inf"))
    run = collect(eval_rows(path, RunInfo("340m", "340M", "softmax")))
    comp = compare(load_published(PUBLISHED), run)
    row = comp[(comp.table == "table1") & (comp["size"] == "340M") & (comp.arm == "softmax")
               & (comp.task == "sciq") & (comp.metric == "acc")].iloc[0]
    assert row.comparable and row.paper_value == pytest.approx(83.2)
    assert row.run_value == pytest.approx(84.2)
    assert row.abs_diff == pytest.approx(1.0)
    assert row.rel_diff == pytest.approx(1.0 / 83.2)
    inf_row = comp[(comp.table == "table1") & (comp["size"] == "340M") & (comp.arm == "softmax")
                   & (comp.task == "wikitext")].iloc[0]
    assert inf_row.run_value == float("inf"), "an inf perplexity must be kept, not dropped"
    # the 1.8B rows were not run: listed, with the reason
    other = comp[(comp.table == "table1") & (comp["size"] == "1.8B")]
    assert len(other) and (~other.comparable).all()
    assert set(other.reason) == {"not measured by this run's config"}
    assert len(comp) == len(load_published(PUBLISHED))


def test_stand_in_size_and_task_not_comparable(tmp_path):
    path = eval_json(tmp_path / "e.json", task="timedial", stands_in_for="sciq")
    comp = compare(load_published(PUBLISHED), collect(eval_rows(path, RunInfo("tiny-s", "340M", "softpick"))))
    row = comp[(comp.table == "table1") & (comp["size"] == "340M") & (comp.arm == "softpick")
               & (comp.task == "sciq") & (comp.metric == "acc")].iloc[0]
    assert not row.comparable and "tiny-s stands in for 340M" in row.reason
    assert pd.isna(row.abs_diff)
    comp = compare(load_published(PUBLISHED), collect(eval_rows(path, RunInfo("340m", "340M", "softpick"))))
    row = comp[(comp.table == "table1") & (comp["size"] == "340M") & (comp.arm == "softpick")
               & (comp.task == "sciq") & (comp.metric == "acc")].iloc[0]
    assert not row.comparable and "timedial stands in for sciq" in row.reason


def test_quantized_rows_land_in_their_table(tmp_path):
    path = eval_json(tmp_path / "e.json")
    rows = collect(eval_rows(path, RunInfo("1.8b", "1.8B", "softpick", "gptq3")))
    assert set(rows.table) == {"table12"} and set(rows.bits) == {"3"}
    comp = compare(load_published(PUBLISHED), rows)
    hit = comp[(comp.table == "table12") & (comp.arm == "softpick") & (comp.bits == "3")
               & (comp.task == "sciq") & comp.comparable]
    assert len(hit) >= 1


def test_attention_and_passkey_rows(tmp_path):
    metrics = {"sink_rate_eps0.2": 1.0, "sink_rate_eps0.3": 0.5, "kurtosis": 300.0,
               "min_activation": -50.0, "max_activation": 20.0, "sparsity_pct": 93.0}
    dump_json(metrics, tmp_path / "a.json")
    rows = collect(attention_rows(tmp_path / "a.json", RunInfo("340m", "340M", "softpick"), "table3", "340M-10k"))
    comp = compare(load_published(PUBLISHED), rows)
    row = comp[(comp.table == "table3") & (comp.arm == "softpick") & (comp.metric == "sparsity_pct")].iloc[0]
    assert row.comparable and row.abs_diff == pytest.approx(93.0 - 92.74)
    dump_json({"lengths": [{"accuracy": 0.9, "target_tokens": 900, "fraction": 0.22, "trials": 10}, {"accuracy": 0.0, "target_tokens": 5000, "fraction": 1.22, "trials": 10}]},
              tmp_path / "p.json")
    comp = compare(load_published(PUBLISHED), collect(passkey_rows(tmp_path / "p.json", RunInfo("340m", "340M", "softmax"))))
    row = comp[(comp.table == "table4") & (comp.arm == "softmax") & (comp.metric == "accuracy@890")].iloc[0]
    assert row.comparable and row.run_value == pytest.approx(90.0)


RULES = load_config([REPO_ROOT / "config" / "config.yaml"])["claims"]


def verdicts(frame):
    return dict(zip(frame.claim, frame.verdict))


@pytest.fixture
def published():
    return published_inputs(PUBLISHED, RULES)


def test_rules_on_the_papers_own_numbers(published):
    frame = evaluate_claims(published, RULES)
    v = verdicts(frame)
    assert {c: v[c] for c in "13458"} == {c: HOLDS for c in "13458"}, frame.to_string()
    # the paper's 1.8B numbers fall short of its words (34x kurtosis, 3.7x max |activation|)
    assert v["2"] == FAILS
    evidence2 = frame.set_index("claim").evidence["2"]
    assert "1.8B: kurtosis ratio softmax/softpick 33.9x" in evidence2 and "FAILS" in evidence2
    assert "340M: kurtosis ratio softmax/softpick 98.3x" in evidence2
    assert v["6"] == HOLDS and "the paper's text" in frame.set_index("claim").evidence["6"]
    assert v["7"] == NOT_MEASURED  # Figure 6 prints no numbers
    margins = frame.set_index("claim").margin
    assert all(margins[c] >= 0 for c in "13458") and margins["2"] < 0


def test_table13_oddity_is_left_out_with_its_reason(published):
    assert published.excluded == ["36 rows of table13: printed identical for 2 and 3 bits; near unquantized values"]
    assert all(key[0] != "hqq" for key in published.quantized["1.8B"]["softpick"])
    evidence5 = evaluate_claims(published, RULES).set_index("claim").evidence["5"]
    assert "1.8B: share of decided <= 3-bit comparisons where softpick degrades less 1" in evidence5


def test_claim5_scores_degradation_not_raw_scores(published):
    # a weaker unquantized softpick no longer counts against it: only each arm's own drop does
    inp = copy.deepcopy(published)
    for arm_scores in (inp.benchmarks["340M"]["softpick"], ):
        for key in list(arm_scores):
            if key[1] in ("acc", "acc_norm"):
                arm_scores[key] -= 3.0
    for key in list(inp.quantized["340M"]["softpick"]):
        if key[3] in ("acc", "acc_norm"):
            inp.quantized["340M"]["softpick"][key] -= 3.0
    assert verdicts(evaluate_claims(inp, RULES))["5"] == HOLDS


def broken(published, claim):
    inp = copy.deepcopy(published)
    if claim == "1":
        inp.attention["1.8B"]["softpick"]["sink_rate_eps0.2"] = 30.0
    elif claim == "3":
        inp.attention["340M"]["softpick"]["sparsity_pct"] = 40.0
    elif claim == "4":
        inp.benchmarks["1.8B"]["softpick"] = dict(inp.benchmarks["1.8B"]["softmax"])
    elif claim == "5":  # softpick degrades like softmax plus a point
        for size in inp.quantized:
            for key, value in inp.quantized[size]["softmax"].items():
                base_sm = inp.benchmarks[size]["softmax"][key[2:]]
                base_sp = inp.benchmarks[size]["softpick"][key[2:]]
                if key[3] in ("acc", "acc_norm"):
                    inp.quantized[size]["softpick"][key] = base_sp - (base_sm - value) - 1.0
                else:
                    inp.quantized[size]["softpick"][key] = base_sp * (value / base_sm) * 1.1
    elif claim == "6":
        inp.loss_gap["340M"] = (-0.03, "a fixture")   # two-sided: softpick far *below* fails too
    elif claim == "8":
        inp.passkey["softpick"] = [(f, 99.0) for f, _ in inp.passkey["softpick"]]
    return inp


@pytest.mark.parametrize("claim", list("13456") + ["8"])
def test_a_fixture_built_to_break_each_claim(published, claim):
    frame = evaluate_claims(broken(published, claim), RULES)
    assert verdicts(frame)[claim] == FAILS, frame.to_string()
    assert frame.set_index("claim").margin[claim] < 0


def test_claim2_holds_where_the_words_are_met(published):
    inp = copy.deepcopy(published)
    inp.attention["1.8B"]["softpick"].update({"kurtosis": 700.0, "min_activation": -17.0, "max_activation": 30.0})
    assert verdicts(evaluate_claims(inp, RULES))["2"] == HOLDS


def test_claim5_needs_the_advantage_largest_at_low_bits(published):
    inp = copy.deepcopy(published)
    for size in inp.quantized:  # softmax collapses at 4 and 8 bits: softpick's advantage is largest there
        for key in inp.quantized[size]["softmax"]:
            if int(key[1]) > 3 and key[3] in ("acc", "acc_norm"):
                inp.quantized[size]["softmax"][key] -= 40.0
    frame = evaluate_claims(inp, RULES)
    assert verdicts(frame)["5"] == FAILS
    assert "advantage at <= 3 bits minus at > 3" in frame.set_index("claim").evidence["5"]


def test_claim4_worse_only_beyond_the_standard_error(published):
    inp = copy.deepcopy(published)
    for key in inp.benchmark_se["1.8B"]["softpick"]:  # eval.limit-sized standard errors (~6 points)
        for arm in ("softmax", "softpick"):
            inp.benchmark_se["1.8B"][arm][key] = 6.0
    frame = evaluate_claims(inp, RULES)
    assert verdicts(frame)["4"] == FAILS, "a -4 point delta is not 'worse' with 6-point errors"


def run_like_inputs():
    """A run in the shape of the scorecard's inputs: dead heads and final losses included."""
    inp = ClaimInputs(sizes=["S", "M"], paper_sizes={"S": "340M", "M": "1.8B"})
    inp.final_loss = {"S": {"softmax": 2.800, "softpick": 2.804}}
    inp.dead_heads = {"S": [(10, 20.0), (20, 12.0), (40, 8.0)]}
    return inp


def test_claim7_peak_early_then_decline():
    assert verdicts(evaluate_claims(run_like_inputs(), RULES))["7"] == HOLDS
    late = run_like_inputs()
    late.dead_heads = {"S": [(10, 5.0), (30, 12.0), (40, 8.0)]}   # peak at 3/4 of training
    frame = evaluate_claims(late, RULES)
    assert verdicts(frame)["7"] == FAILS and "peak at step 30 of 40" in frame.set_index("claim").evidence["7"]
    assert verdicts(evaluate_claims(run_like_inputs(), RULES))["6"] == HOLDS


def test_not_testable_when_the_baseline_lacks_the_phenomenon(published):
    inp = copy.deepcopy(published)
    for size in inp.attention:
        inp.attention[size]["softmax"].update({"sink_rate_eps0.2": 2.0, "sink_rate_eps0.3": 1.0, "kurtosis": 5.0})
    for size in inp.quantized:   # quantization costs softmax nothing
        for key in inp.quantized[size]["softmax"]:
            inp.quantized[size]["softmax"][key] = inp.benchmarks[size]["softmax"][key[2:]]
    inp.passkey = {arm: [(f, 0.0) for f, _ in pts] for arm, pts in inp.passkey.items()}
    inp.dead_heads = {"340M": [(10, 0.0), (20, 0.0)]}
    frame = evaluate_claims(inp, RULES).set_index("claim")
    for claim in "12578":
        assert frame.verdict[claim] == NOT_TESTABLE, (claim, frame.evidence[claim])
    # the measured value is printed beside the threshold
    assert "340M: softmax sink rate at eps 0.3 1% (needs >= 5%; lacking)" in frame.evidence["1"]
    assert "softmax kurtosis 5 (needs >= 30.0" in frame.evidence["2"]
    assert frame.verdict["3"] == HOLDS and frame.verdict["4"] == HOLDS


def test_a_size_without_the_phenomenon_is_left_out_and_named(published):
    inp = copy.deepcopy(published)
    inp.attention["1.8B"]["softmax"]["kurtosis"] = 4.0
    frame = evaluate_claims(inp, RULES).set_index("claim")
    assert frame.verdict["2"] == HOLDS  # 340M alone meets the words
    assert "baseline lacks the phenomenon: 1.8B: softmax kurtosis 4" in frame.evidence["2"]


def test_claims_not_measured_without_numbers():
    frame = evaluate_claims(ClaimInputs(sizes=["S"]), RULES)
    assert list(frame.verdict) == [NOT_MEASURED] * 8


def test_seeds_use_the_pessimistic_end_of_the_interval(published):
    a, b = copy.deepcopy(published), copy.deepcopy(published)
    a.attention["340M"]["softpick"]["sparsity_pct"] = 99.0
    b.attention["340M"]["softpick"]["sparsity_pct"] = 85.0   # mean 92 >= 90, mean - std 82.1 < 90
    frame = evaluate_claims([a, b], RULES).set_index("claim")
    assert frame.verdict["3"] == FAILS and "92.0 +- 9.9% (n=2)" in frame.evidence["3"]
    assert frame.margin["3"] == pytest.approx(92.0 - 9.8995 - 90.0, abs=1e-3)
    b.attention["340M"]["softpick"]["sparsity_pct"] = 97.0
    frame = evaluate_claims([a, b], RULES).set_index("claim")
    assert frame.verdict["3"] == HOLDS and set(frame.seeds) == {2}


def test_cli_writes_the_verdicts_as_csv(tmp_path, capsys):
    out = tmp_path / "verdicts.csv"
    assert claims_main(["--published", str(PUBLISHED), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    frame = pd.read_csv(out, dtype={"claim": str})
    assert list(frame.columns) == ["claim", "verdict", "margin", "evidence"]
    assert captured.out == out.read_text()
    assert dict(zip(frame.claim, frame.verdict))["5"] == HOLDS
    assert "left out by rule: 36 rows of table13" in captured.err
    assert "claim 2: the paper's own printed numbers fall short" in captured.err
    with pytest.raises(SystemExit):
        claims_main(["--published", str(tmp_path / "missing.csv")])
    assert "no such file" in capsys.readouterr().err


def test_scorecard_keys_carry_the_seed():
    entry = parse_entry("eval|80|tiny-s|softmax|hqq2", "x.json")
    assert (entry["seed"], entry["size"], entry["arm"], entry["extra"]) == ("80", "tiny-s", "softmax", "hqq2")
    with pytest.raises(ValueError, match="kind\\|seed\\|size\\|arm"):
        parse_entry("eval|tiny-s|softmax", "x.json")


def test_passkey_lengths_matched_by_fraction(tmp_path):
    dump_json({"lengths": [{"accuracy": 0.5, "target_tokens": 192, "fraction": 0.75, "trials": 4}]}, tmp_path / "p.json")
    rows = collect(passkey_rows(tmp_path / "p.json", RunInfo("tiny-s", "340M", "softpick")))
    assert list(rows.metric) == ["accuracy@3075"]


def test_run_inputs_one_per_seed_with_standard_errors(tmp_path):
    from softpick_repro.report.scorecard import claim_inputs_by_seed

    sizes = [{"name": "tiny-s", "label": "tiny-S", "paper_size": "340M"}]
    entries = []
    for seed, acc in (("79", 0.50), ("80", 0.60)):
        for arm in ("softmax", "softpick"):
            path = eval_json(tmp_path / f"{seed}_{arm}.json", acc=acc)
            entries.append(parse_entry(f"eval|{seed}|tiny-s|{arm}|none", str(path)))
    per_seed = claim_inputs_by_seed(entries, sizes)
    assert len(per_seed) == 2 and per_seed[0].paper_sizes == {"tiny-S": "340M"}
    assert per_seed[1].benchmarks["tiny-S"]["softpick"][("sciq", "acc")] == pytest.approx(60.0)
    se = per_seed[0].benchmark_se["tiny-S"]["softmax"]
    assert se[("sciq", "acc")] == pytest.approx(1.0)        # lm-eval's acc_stderr 0.01, in points
    assert se[("sciq", "acc_norm")] != se[("sciq", "acc_norm")]  # no stderr, no document count: nan
    frame = evaluate_claims(per_seed, RULES).set_index("claim")
    assert frame.seeds["4"] == 2 and "(n=2)" in frame.evidence["4"]
    assert frame.sizes["4"] == "tiny-S (for 340M)"
