"""Shared pieces of the multi-process training tests (test_ddp, test_fsdp, test_multinode):
synthetic token shards once per module, and a run's metrics.csv as rows."""
import csv

import pytest

from softpick_repro.train.synthetic import write_synthetic_shards


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("data") / "tokens")


def read_metrics(out_dir):
    with open(out_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))
