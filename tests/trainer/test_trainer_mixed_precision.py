"""`--mixed-precision`: float16 runs scale the loss (and skip the steps whose scaled gradients
overflow instead of stopping), bfloat16 runs train without scaling, and what gets exported is a
float32 twin holding the trained weights."""

import numpy as np
import pytest
import tensorflow as tf

import export
import keras
import trainer.train
from trainer.train import train_and_evaluate
from trainer_testlib import model_weights, tiny_config, tiny_data

pytestmark = pytest.mark.slow  # whole runs, with exports


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


def _checkpoint_values(prefix: str, fragment: str) -> dict:
    return {name: tf.train.load_checkpoint(prefix).get_tensor(name)
            for name, _ in tf.train.list_variables(prefix) if fragment in name}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_run_trains_and_exports_a_float32_twin(tmp_path, data, monkeypatch, policy):
    seen = {}
    real_export = trainer.train._export

    def spy_export(model, spec, config, sample_ds):
        seen["trained"] = model
        return real_export(model, spec, config, sample_ds)

    def fake_export_model(model, spec, config, sample_ds):
        seen["exported"] = model
        seen["batch"] = next(iter(sample_ds))
        return {}

    monkeypatch.setattr(trainer.train, "_export", spy_export)
    monkeypatch.setattr(export, "export_model", fake_export_model)
    final = train_and_evaluate(tiny_config(*data, tmp_path / "model", mixed_precision=policy, max_steps=6,
                                           eval_every_steps=3, **{"input-keep-prob": 0.9}))
    assert final["steps"] == 6 and np.isfinite(final["eval"]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # the run leaves the global policy alone

    trained, exported = seen["trained"], seen["exported"]
    assert trained.encoder.compute_dtype == policy.split("_")[1]
    assert exported.encoder.compute_dtype == "float32" and exported is not trained
    for mine, theirs in zip(exported.weights, trained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    batch = {k: v for k, v in seen["batch"].items() if k != "id"}
    np.testing.assert_allclose(exported(batch).numpy(), trained(batch).numpy(), atol=0.05)

    scale = _checkpoint_values(str(tmp_path / "model" / "checkpoints" / "ckpt-6"), "scale")
    if policy == "mixed_float16":
        assert scale, "a float16 run checkpoints its dynamic loss scale"
    else:
        assert not scale, "bfloat16 has float32's range: no loss scaling"


def test_float16_steps_whose_scaled_gradients_overflow_are_skipped_not_fatal(tmp_path, data, monkeypatch):
    """A loss scale of 2^40 overflows float16 at once: those steps leave the weights alone and
    halve the scale, and the run goes on (a NaN *loss* would stop it; these losses are finite)."""
    real = keras.optimizers.LossScaleOptimizer

    class HugeInitialScale(real):
        def __init__(self, inner_optimizer, **kwargs):
            super().__init__(inner_optimizer, initial_scale=2.0 ** 40, **kwargs)

    monkeypatch.setattr(trainer.train.keras.optimizers, "LossScaleOptimizer", HugeInitialScale)
    monkeypatch.setattr(trainer.train, "_export", lambda *args: {})
    config = tiny_config(*data, tmp_path / "model", mixed_precision="mixed_float16", max_steps=3,
                         save_checkpoints_steps=1)
    train_and_evaluate(config)
    checkpoints = tmp_path / "model" / "checkpoints"
    first = model_weights(str(checkpoints / "ckpt-1"))
    third = model_weights(str(checkpoints / "ckpt-3"))
    assert first and all(np.array_equal(first[name], third[name]) for name in first)
    (scale,) = _checkpoint_values(str(checkpoints / "ckpt-3"), "scale").values()
    assert scale == 2.0 ** 37  # halved once per skipped step
    logged = {}
    for path in tf.io.gfile.glob(str(tmp_path / "model" / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                logged[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    assert logged[("overflow_skipped_steps", 3)] == 3 and logged[("loss_scale", 3)] == 2.0 ** 37

    # From Keras' default scale (2^15) the same run soon finds a scale that fits, and learns.
    monkeypatch.setattr(trainer.train.keras.optimizers, "LossScaleOptimizer", real)
    train_and_evaluate(tiny_config(*data, tmp_path / "fresh", mixed_precision="mixed_float16", max_steps=6))
    moved = model_weights(str(tmp_path / "fresh" / "checkpoints" / "ckpt-6"))
    assert any(not np.array_equal(moved[name], first[name]) for name in first)
