"""The command a user runs, end to end on a tiny slice of the bundled data: it trains, evaluates,
exports a verified SavedModel, and the export predicts one row per input sequence. Its console
through a pipe (as in Vertex AI's logs) is short and plain, and it leaves a run report and
TensorBoard HParams data in the model dir."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from testlib import write_bundled_slice

pytestmark = pytest.mark.slow  # the trainer's command line, end to end in a subprocess

# The console budget of a run: README.md promises the bundled main job prints under 60 lines.
MAX_CONSOLE_LINES = 60


def _slice(split: str, target, every: int) -> list:
    """The records of `testlib.write_bundled_slice`, parsed."""
    return [json.loads(line) for line in write_bundled_slice(split, target, every)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    train = _slice("train", root / "train.jsonl", 6)   # 45 records, every class
    test = _slice("test", root / "test.jsonl", 20)     # 19 records
    model_dir = root / "model"
    command = [sys.executable, "-m", "trainer.task", "--train-data", str(root / "train.jsonl"),
               "--test-data", str(root / "test.jsonl"), "--model-dir", str(model_dir),
               "--max-steps", "6", "--batch-size", "8", "--hidden-units", "8", "--seed", "3"]
    # The product's own console defaults: not the test session's TF_CPP_MIN_LOG_LEVEL.
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", "SEQTRAIN_VERBOSITY", "AIP_MODEL_DIR")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"model_dir": model_dir, "stdout": result.stdout, "stderr": result.stderr, "train": train,
            "test": test}


def test_run_writes_config_metrics_checkpoints_and_assets(trained_run):
    model_dir = trained_run["model_dir"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["hidden_units"] == 8
    assert config["model"]["num_classes"] == 9
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert metrics["test"]["examples"] == len(trained_run["test"])
    correct = metrics["test"]["accuracy"] * metrics["test"]["examples"]  # a share of the examples
    assert abs(correct - round(correct)) < 1e-6
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


def test_console_in_a_pipe_is_short_plain_and_free_of_tensorflow_chatter(trained_run):
    stdout, stderr = trained_run["stdout"], trained_run["stderr"]
    lines = stdout.splitlines() + stderr.splitlines()
    assert len(lines) < MAX_CONSOLE_LINES, "\n".join(lines)
    assert "\r" not in stdout and "\r" not in stderr  # a log gets lines, not a redrawn bar
    progress = [line for line in stdout.splitlines() if line.startswith("step ")]
    assert 1 <= len(progress) <= 11 and progress[-1].startswith("step 6/6 100%"), progress
    assert "seq/s" in progress[-1] and "tok/s" in progress[-1] and "took" in progress[-1]
    assert not [line for line in stdout.splitlines() if line.startswith("epoch ")]
    for noise in ("absl::InitializeLog", "I0000", "E0000", "cuInit", "oneDNN", "WARNING:tensorflow"):
        assert noise not in stderr, stderr[-3000:]
    assert "report" in stdout and "report.html" in stdout


def _summaries(folder):
    """(plugin names, scalar tags) in the event files directly in `folder`."""
    plugins, tags = set(), set()
    for path in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            for value in event_pb2.Event.FromString(record).summary.value:
                plugins.add(value.metadata.plugin_data.plugin_name)
                tags.add(value.tag)
    return plugins, tags


def test_the_model_dir_holds_the_runs_hparams_and_final_metrics(trained_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    model_dir = trained_run["model_dir"]
    plugins, tags = _summaries(model_dir)
    assert "hparams" in plugins, plugins
    assert {"final/test_accuracy", "final/test_loss", "final/sequences_per_second"} <= tags, tags
    session = None
    for path in model_dir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            for value in event_pb2.Event.FromString(record).summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        session = data.session_start_info
    assert session is not None
    assert session.hparams["hidden_units"].number_value == 8
    assert session.hparams["cell"].string_value == "lstm"
    assert "model_dir" not in session.hparams  # differs between any two runs


def test_run_report_is_written_into_the_model_dir(trained_run):
    page = (trained_run["model_dir"] / "report.html").read_text()
    for section in ("summary", "curves", "evaluation", "data", "throughput", "export", "config"):
        assert f"<section id='{section}'>" in page
    assert "Confusion matrix" in page and "Reliability" in page
    assert "data:image/png;base64," in page and "<script" not in page
