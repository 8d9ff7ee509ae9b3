"""The tuning tests' data: a 40-record slice of the bundled data and a search space, written once
per session. Their helpers are in tune_testlib.py."""

import pytest

from testlib import write_bundled_slice
from tune_testlib import SPACE


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """{"train": 40-record JSONL, "test": 20-record JSONL, "space": a 3-entry YAML space}."""
    root = tmp_path_factory.mktemp("tune_data")
    out = {}
    for split, every, count in (("train", 7, 40), ("test", 30, 20)):
        out[split] = str(root / f"{split}.jsonl")
        write_bundled_slice(split, out[split], every, count)
    out["space"] = str(root / "space.yaml")
    with open(out["space"], "w") as f:
        f.write(SPACE)
    return out
