"""A model dir on ram:// (TensorFlow's in-memory filesystem, which no other process can read):
a tiny run trains, exports and verifies there, the clean-process SavedModel check running on a
local copy (logged) instead of failing on files the checker cannot see."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from trainer.train import train_and_evaluate
from trainer_testlib import tiny_config, tiny_data

pytestmark = pytest.mark.slow  # a whole run and its export


def test_a_ram_model_dir_exports_a_verified_model(tmp_path, caplog):
    data = tiny_data(tmp_path)
    model_dir = f"ram://{tmp_path.name}/model"
    with caplog.at_level(logging.INFO):
        final = train_and_evaluate(tiny_config(*data, model_dir, max_steps=3))
    export = final["export"]
    assert export["verified"] and export["tflite_verified"], export
    version_dir = export["saved_model"]
    assert version_dir == f"{model_dir}/export/{export['version']}"
    assert any(f"{model_dir}/export/tmp-{export['version']} is in this process's memory" in record.message
               and "verifying a local copy" in record.message for record in caplog.records)
    # Published on ram:// itself (no tmp-* left), loadable there, metrics beside it.
    assert [name.rstrip("/") for name in tf.io.gfile.listdir(f"{model_dir}/export")] == [str(export["version"])]
    assert tf.io.gfile.exists(f"{model_dir}/metrics.json")
    loaded = tf.saved_model.load(version_dir)
    features = tf.zeros([2, 5, 12], tf.float32)
    out = loaded.signatures["serving_default"](features=features, lengths=tf.constant([5, 2]))
    assert out["probabilities"].shape[0] == 2
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
