"""Inside a Vertex AI job (`AIP_MODEL_DIR` set): the verified model lands directly in
AIP_MODEL_DIR (`saved_model.pb` at its top, as Vertex AI's model upload expects), with the TFLite
model and the run report beside it; no version folder and no temporary folder stay behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainer_testlib import tiny_data, tiny_flags

pytestmark = pytest.mark.slow  # the trainer's command line, end to end in a subprocess


@pytest.fixture(scope="module")
def vertex_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vertex")
    train, evaluation = tiny_data(root)
    aip_model_dir = root / "aip-model"
    aip_model_dir.mkdir()
    env = dict(os.environ, AIP_MODEL_DIR=str(aip_model_dir))
    for name in ("AIP_TENSORBOARD_LOG_DIR", "AIP_CHECKPOINT_DIR"):
        env.pop(name, None)
    command = [sys.executable, "-m", "trainer.task",
               *tiny_flags(train, evaluation, root / "model", max_steps=4)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"aip": aip_model_dir, "model_dir": root / "model", "stdout": result.stdout,
            "evaluation": evaluation}


def test_the_model_is_directly_in_aip_model_dir_with_tflite_and_report_beside_it(vertex_run):
    aip = vertex_run["aip"]
    names = sorted(p.name for p in aip.iterdir())
    assert {"saved_model.pb", "variables", "assets", "tflite", "report.html"} <= set(names), names
    assert (aip / "tflite" / "model.tflite").stat().st_size > 0
    assert not [n for n in names if n.isdigit() or n.startswith("tmp-")], names
    assert not (vertex_run["model_dir"] / "export").exists()
    assert (vertex_run["model_dir"] / "report.html").exists()
    exported = json.loads((vertex_run["model_dir"] / "metrics.json").read_text())["export"]
    assert exported["layout"] == "vertex" and exported["saved_model"] == str(aip)
    assert exported["verified"] and exported["tflite_verified"]
    assert str(aip) in vertex_run["stdout"]  # the final table names it


def test_the_model_in_aip_model_dir_serves(vertex_run):
    with open(vertex_run["evaluation"]) as f:
        record = json.loads(f.readline())
    features = np.asarray(record["features"], np.float32)[None]
    serve = tf.saved_model.load(str(vertex_run["aip"])).signatures["serving_default"]
    out = serve(features=tf.constant(features), lengths=tf.constant([features.shape[1]], tf.int32))
    assert out["probabilities"].shape == (1, 9)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(), 1.0, rtol=1e-5)
