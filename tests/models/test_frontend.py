"""The convolutional front end and per-sequence normalisation (models/frontend.py): lengths
carried through as ceil(length / stride), a sequence in a padded batch gives what it gives
alone (no convolution reads past its end), z-normalisation over real steps only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import ModelConfig, build_model
from models.frontend import ConvFrontEnd, sequence_normalize, strided_lengths
from models_testlib import make_batch, tiny_config, to_tensors


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("kernel_size", [1, 4, 7])
def test_each_sequence_alone_equals_it_in_a_padded_batch(stride, kernel_size):
    keras.utils.set_random_seed(3)
    frontend = ConvFrontEnd(filters=3, kernel_size=kernel_size, strides=(stride, 2))
    rng = np.random.default_rng(0)
    lengths = np.array([13, 1, 6, 8], np.int32)
    steps = rng.normal(size=(4, 17, 2)).astype(np.float32)  # garbage past every length
    out, out_lengths = frontend(tf.constant(steps), tf.constant(lengths))
    total = stride * 2
    assert out.shape[1] == -(-17 // total)
    np.testing.assert_array_equal(out_lengths.numpy(), -(-lengths // total))
    for i, length in enumerate(lengths):
        alone, alone_length = frontend(tf.constant(steps[i:i + 1, :length]),
                                       tf.constant(lengths[i:i + 1]))
        real = int(alone_length[0])
        np.testing.assert_allclose(out[i, :real].numpy(), alone[0, :real].numpy(), atol=1e-6)
        np.testing.assert_array_equal(out[i, real:].numpy(), 0.0)


def test_strided_lengths_round_up():
    np.testing.assert_array_equal(strided_lengths(tf.constant([0, 1, 7, 8, 9]), 4).numpy(),
                                  [0, 1, 2, 2, 3])


def test_sequence_normalize_uses_real_steps_only():
    steps = np.zeros((2, 6, 1), np.float32)
    steps[0, :4, 0] = [1.0, 2.0, 3.0, 6.0]
    steps[1, :2, 0] = [5.0, 5.0]  # constant: zeros, not NaN
    out = sequence_normalize(tf.constant(steps), tf.constant([4, 2])).numpy()
    real = out[0, :4, 0]
    np.testing.assert_allclose([real.mean(), real.std()], [0.0, 1.0], atol=1e-5)
    np.testing.assert_array_equal(out[0, 4:], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)


def test_sequence_norm_makes_the_model_blind_to_level_and_scale():
    keras.utils.set_random_seed(5)
    config = tiny_config("multiclass", pooling="mean", sequence_norm="on", conv_layers=1,
                         conv_stride=2, conv_filters=4)
    model = build_model(config)
    batch = make_batch(config, lengths=(6, 4, 5))
    shifted = dict(batch, features=batch["features"] * 3.0 + 7.0)
    np.testing.assert_allclose(model(to_tensors(shifted)).numpy(),
                               model(to_tensors(batch)).numpy(), atol=1e-4)
    off = build_model(tiny_config("multiclass", pooling="mean"))
    assert not np.allclose(off(to_tensors(shifted)).numpy(), off(to_tensors(batch)).numpy(),
                           atol=1e-4)


def test_frontend_weights_train_and_checkpoint(tmp_path):
    config = tiny_config("multiclass", pooling="mean", conv_layers=2, conv_stride=4,
                         conv_filters=4)
    model = build_model(config)
    names = [v.path for v in model.trainable_variables if "frontend" in v.path]
    assert len(names) == 8  # 2 x (conv kernel, conv bias, norm gamma, norm beta)
    batch = to_tensors(make_batch(config, lengths=(9, 3, 5)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(batch))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for v, g in zip(model.trainable_variables, grads) if "frontend" in v.path)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    twin = build_model(config)
    tf.train.Checkpoint(model=twin).restore(path).assert_existing_objects_matched()
    np.testing.assert_allclose(twin(batch).numpy(), model(batch).numpy(), atol=1e-6)


@pytest.mark.parametrize("fields,message", [
    ({"conv_layers": 2, "conv_stride": 6}, "power of 2"),
    ({"conv_layers": 1, "conv_stride": 8}, "needs more than"),
    ({"conv_layers": 1, "conv_stride": 2, "head": "tagging", "target_kind": "tags"}, "tagging"),
    ({"sequence_norm": "sometimes"}, "sequence_norm"),
    ({"conv_stride": 0}, "conv_stride"),
])
def test_config_refuses_frontends_it_cannot_build(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)


def test_unresolved_auto_builds_no_frontend():
    model = build_model(tiny_config("multiclass", conv_layers=-1, conv_stride=-1))
    assert model.frontend is None and not model.model_config.uses_sequence_norm
