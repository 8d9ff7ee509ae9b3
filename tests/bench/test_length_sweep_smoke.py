"""Smoke test of bench/length_sweep.py: a two-by-two grid runs through the trainer's path and
counts exactly the real tokens it wrote (the speeds themselves mean nothing here)."""

import importlib.util

import pytest

from testlib import REPO_ROOT


@pytest.mark.slow  # trains four cells with XLA
def test_tiny_grid_counts_the_real_tokens_of_each_cell(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("length_sweep", REPO_ROOT / "bench" / "length_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    out = tmp_path / "cells.json"
    cells = sweep.main(["--medians", "8,40", "--batches", "8,16", "--tokens", "600", "--json-out", str(out)])
    assert [(c["median"], c["batch"]) for c in cells] == [(8, 8), (8, 16), (40, 8), (40, 16)]
    for cell in cells:
        # A timed epoch is as many sequences as the file holds (whole batches; they mix records
        # across epoch ends, so not exactly the file's tokens), every one of a length the file has.
        assert cell["sequences"] == cell["records"] and cell["records"] % cell["batch"] == 0
        median = cell["median"]
        assert cell["records"] * (median // 2) <= cell["tokens"] <= cell["records"] * (median * 3 // 2)
        assert 0.0 <= cell["padding_share"] < 0.5 and cell["shapes"]
    assert cells[0]["ratio"] == 1.0 and out.exists()
    assert "ratio: real tokens/s against median 8, batch 8" in capsys.readouterr().out
