"""Tables of several seeds combined cell by cell as mean ± std."""
import pandas as pd
import pytest

from softpick_repro.report.seed_tables import combine_cell, combine_frames, combine_seed_tables
from softpick_repro.report.tables import write_table


def test_numbers_become_mean_and_std_with_the_tables_decimals():
    assert combine_cell(["5.20", "5.30"]) == "5.25 ± 0.07"
    assert combine_cell(["12", "14", "16"]) == "14 ± 2"
    assert combine_cell(["tiny-S", "tiny-S"]) == "tiny-S"   # labels equal in every seed stay
    assert combine_cell(["0.00", "0.00"]) == "0.00"
    assert combine_cell(["inf", "3.0"]) == "inf / 3.0"
    assert combine_cell(["", "3.0"]) == "3.0"


def test_cells_that_differ_but_are_not_numbers_are_an_error():
    with pytest.raises(ValueError, match="not all numbers"):
        combine_cell(["softmax", "softpick"])


def test_tables_of_different_shape_are_refused():
    a = pd.DataFrame({"task": ["x"], "softmax": ["1.00"]})
    b = pd.DataFrame({"task": ["x", "y"], "softmax": ["1.00", "2.00"]})
    with pytest.raises(ValueError, match="seed #2"):
        combine_frames([a, b])


def test_one_seed_is_unchanged_and_two_give_a_caption(tmp_path):
    frames = [pd.DataFrame({"task": ["sciq", "piqa"], "softmax": ["50.00", "60.00"], "Delta": ["1.00", "-2.00"]}),
              pd.DataFrame({"task": ["sciq", "piqa"], "softmax": ["52.00", "60.00"], "Delta": ["3.00", "-2.00"]})]
    paths = []
    for i, frame in enumerate(frames):
        write_table(frame, tmp_path / f"s{i}" / "table01", "Table 1: scores.")
        paths.append(tmp_path / f"s{i}" / "table01.csv")
    combine_seed_tables(paths[:1], ["79"], tmp_path / "one")
    assert (tmp_path / "one.csv").read_text() == paths[0].read_text()
    assert (tmp_path / "one.md").read_text() == paths[0].with_suffix(".md").read_text()
    combine_seed_tables(paths, ["79", "80"], tmp_path / "two")
    two = pd.read_csv(tmp_path / "two.csv", dtype=str)
    assert list(two.softmax) == ["51.00 ± 1.41", "60.00"] and list(two.Delta) == ["2.00 ± 1.41", "-2.00"]
    assert (tmp_path / "two.md").read_text().startswith("Table 1: scores. Mean ± std over seeds 79, 80.")


def test_count_of_cells_combine_their_counts_over_one_denominator():
    # Table 5's "dead heads / all heads" differs between seeds when one seed has a dead head
    assert combine_cell(["0 / 6", "1 / 6"]) == "0.5 ± 0.7 / 6"
    assert combine_cell(["2 / 6", "2 / 6"]) == "2 / 6"
    with pytest.raises(ValueError, match="not all numbers"):
        combine_cell(["0 / 6", "1 / 4"])
