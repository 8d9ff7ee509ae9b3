"""The command a user runs, end to end on a tiny slice of the bundled data: it trains, evaluates,
exports a verified SavedModel, and the export predicts one row per input sequence."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data.config import bundled_paths


def _slice(source: str, target, every: int) -> list:
    with gzip.open(source, "rt") as f:
        records = [json.loads(line) for i, line in enumerate(f) if i % every == 0]
    target.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    paths = bundled_paths()
    train = _slice(paths["train"], root / "train.jsonl", 6)   # 45 records, every class
    test = _slice(paths["test"], root / "test.jsonl", 20)     # 19 records
    model_dir = root / "model"
    command = [sys.executable, "-m", "trainer.task", "--train-data", str(root / "train.jsonl"),
               "--test-data", str(root / "test.jsonl"), "--model-dir", str(model_dir),
               "--max-steps", "6", "--batch-size", "8", "--hidden-units", "8", "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"model_dir": model_dir, "stdout": result.stdout, "train": train, "test": test}


def test_run_writes_config_metrics_checkpoints_and_assets(trained_run):
    model_dir = trained_run["model_dir"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["hidden_units"] == 8
    assert config["model"]["num_classes"] == 9
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert metrics["test"]["examples"] == len(trained_run["test"])
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert (model_dir / "assets" / "labels.txt").read_text().split() == [str(i) for i in range(1, 10)]
    assert "test accuracy" in trained_run["stdout"]


def test_export_loads_and_predicts_one_row_per_sequence(trained_run):
    export_root = trained_run["model_dir"] / "export"
    versions = [p for p in export_root.iterdir() if p.name.isdigit()]
    assert len(versions) == 1, list(export_root.iterdir())
    loaded = tf.saved_model.load(str(versions[0]))
    serve = loaded.signatures["serving_default"]
    records = trained_run["test"]
    lengths = np.array([len(r["features"]) for r in records], np.int32)
    features = np.zeros((len(records), lengths.max(), 12), np.float32)
    for i, r in enumerate(records):
        features[i, : lengths[i]] = r["features"]
    out = serve(features=tf.constant(features), lengths=tf.constant(lengths))
    assert out["logits"].shape == (len(records), 9)
    assert out["classes"].shape == (len(records),)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    labels = {c.decode() for c in out["classes"].numpy()}
    assert labels <= {str(i) for i in range(1, 10)}
