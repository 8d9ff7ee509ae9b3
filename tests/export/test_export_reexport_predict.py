"""`python -m export` re-exports a model dir; `python -m trainer.predict` runs an export on files."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data.config import DataConfig
from data.prepare import prepare_files, prepared_dir
from export.reexport import check_checkpoint_complete, reexport
from export_testlib import DENSE_LABELS, dense_spec, model_config
from models import build_model
from testlib import REPO_ROOT


def _write_records(path, count, seed, with_labels=True):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        record = {"id": f"rec-{i}", "features": rng.normal(size=(int(rng.integers(2, 9)), 12)).round(4).tolist()}
        if with_labels:
            record["label"] = DENSE_LABELS[i % 9]
        records.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reexport")
    model_dir = root / "model"
    spec = dense_spec()
    spec.save(str(model_dir))
    model = build_model(model_config(spec, hidden_units=6, cell="gru"))
    (model_dir / "config.json").write_text(json.dumps({
        "model": model.model_config.to_dict(), "data": {"batch_size": 8},
        "train": {"export_formats": "saved_model", "seed": 3, "export_mc_samples": 4}}))
    _write_records(root / "eval.jsonl", 20, seed=1)
    prepare_files(str(root / "eval.jsonl"), spec, DataConfig(), prepared_dir(str(model_dir)),
                  split="eval", require_targets=True)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(model_dir / "best"), 1).save()
    return model_dir, model


@pytest.mark.slow  # a whole re-export, verified in a subprocess
def test_reexport_restores_the_best_checkpoint(model_dir, tmp_path):
    model_dir, model = model_dir
    # Every weight is in the checkpoint (raises otherwise).
    check_checkpoint_complete(build_model(model.model_config), str(tf.train.latest_checkpoint(
        str(model_dir / "best"))))
    result = reexport(str(model_dir), str(tmp_path / "export"))
    assert result["verified"] and result["checkpoint"].startswith(str(model_dir / "best"))
    assert result["mc_samples"] == 4 and "tflite" not in result
    loaded = tf.saved_model.load(result["saved_model"])
    x = tf.random.stateless_normal([3, 5, 12], seed=[4, 2])
    lengths = tf.constant([5, 2, 4], tf.int32)
    served = loaded.signatures["serving_default"](features=x, lengths=lengths)["logits"]
    np.testing.assert_allclose(served, model({"features": x, "lengths": lengths}), atol=1e-5)


def test_reexport_refuses_a_checkpoint_missing_weights(model_dir, tmp_path):
    model_dir, model = model_dir
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((model_dir / "config.json").read_text())
    dense_spec().save(str(partial))
    head_only = tf.train.Checkpoint(head=model.head)  # saved as model/head/...: the encoder is absent
    tf.train.Checkpoint(model=head_only).save(str(partial / "best" / "ckpt"))
    with pytest.raises(ValueError, match="cannot be re-exported"):
        reexport(str(partial), str(tmp_path / "export"))


@pytest.mark.slow  # the shared exports, predict in a subprocess
def test_batch_prediction_writes_one_row_per_record(dense_export, tmp_path):
    records = _write_records(tmp_path / "new.jsonl", 11, seed=2, with_labels=False)
    out = tmp_path / "predictions.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "trainer.predict", "--model", str(dense_export.version_dir),
         "--data", str(tmp_path / "new.jsonl"), "--output", str(out), "--uncertainty",
         "--batch-size", "4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(records)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in records)
    for row in rows:
        assert row["class"] in DENSE_LABELS
        assert len(row["probabilities"]) == 9
        assert abs(sum(row["probabilities"]) - 1.0) < 1e-5
        assert row["mutual_information"] >= 0.0 and row["predictive_entropy"] > 0.0
    from trainer.predict import recorded_head

    # The head is read from the export, not re-derived from the spec and the logits' width.
    assert recorded_head(str(dense_export.version_dir)) == "multiclass"
    assert recorded_head(str(tmp_path)) == ""  # an earlier version's export records none


def test_export_help_answers_without_loading_tensorflow():
    """`python -m export --help` prints its usage, not TensorFlow's C++ start-up lines: the
    package loads TensorFlow only when something is exported."""
    check = ("import sys, export\nassert 'tensorflow' not in sys.modules, 'import export loaded TF'\n"
             "from export.__main__ import main\nmain(['--help'])")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: python -m export") and "--model-dir" in result.stdout
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr
