"""Poolings and heads on literal tensors: only real steps count, padding never wins."""

import numpy as np
import pytest
import tensorflow as tf

from models.heads import class_ids, make_head, prior_bias, probabilities
from models.pooling import POOLINGS, AttentionPooling, make_pooling

# Two sequences of lengths 3 and 1, and one of length 0. Real values are negative so that a
# max that let padding (0 or +100) in would be caught.
LENGTHS = np.array([3, 1, 0], np.int32)
REAL = np.array([[[-1.0, -6.0], [-3.0, -2.0], [-2.0, -4.0], [100.0, 0.0]],
                 [[-5.0, -7.0], [100.0, 100.0], [0.0, 0.0], [0.0, 0.0]],
                 [[100.0, 100.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], np.float32)
FINAL = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], np.float32)


def _pool(name, outputs=REAL):
    return make_pooling(name)(tf.constant(outputs), tf.constant(FINAL), tf.constant(LENGTHS)).numpy()


def test_last_is_encoder_final():
    np.testing.assert_array_equal(_pool("last"), FINAL)


def test_mean_over_real_steps():
    np.testing.assert_allclose(_pool("mean"), [[-2.0, -4.0], [-5.0, -7.0], [0.0, 0.0]])


def test_max_ignores_padding():
    np.testing.assert_array_equal(_pool("max"), [[-1.0, -2.0], [-5.0, -7.0], [0.0, 0.0]])


def test_attention_softmax_over_real_steps_only():
    layer = AttentionPooling()
    pooled = layer(tf.constant(REAL), tf.constant(FINAL), tf.constant(LENGTHS)).numpy()
    weights = layer.attention_weights(tf.constant(REAL), tf.constant(LENGTHS)).numpy()
    np.testing.assert_array_equal(weights[0, 3:], 0.0)
    np.testing.assert_array_equal(weights[1, 1:], 0.0)
    np.testing.assert_array_equal(weights[2], 0.0)
    np.testing.assert_allclose(weights[:2].sum(axis=1), 1.0, rtol=1e-6)
    # By hand from the layer's own weights.
    w, b = layer.projection.kernel.numpy(), layer.projection.bias.numpy()
    v = layer.score.kernel.numpy()[:, 0]
    scores = np.tanh(REAL[0, :3] @ w + b) @ v
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(weights[0, :3], expected, rtol=1e-5)
    np.testing.assert_allclose(pooled[0], expected @ REAL[0, :3], rtol=1e-5)
    np.testing.assert_allclose(pooled[1], REAL[1, 0], rtol=1e-6)
    np.testing.assert_array_equal(pooled[2], 0.0)


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_pooling_ignores_padding_values_and_has_config(name):
    garbage = REAL.copy()
    garbage[0, 3] = [-1e4, 1e4]
    garbage[1, 1:] = 1e4
    layer = make_pooling(name)
    a = layer(tf.constant(REAL), tf.constant(FINAL), tf.constant(LENGTHS)).numpy()
    b = layer(tf.constant(garbage), tf.constant(FINAL), tf.constant(LENGTHS)).numpy()
    np.testing.assert_array_equal(a, b)
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_tagging_head_zero_past_length_and_shapes():
    outputs = tf.constant(REAL)
    pooled = tf.constant(FINAL)
    lengths = tf.constant(LENGTHS)
    tagging = make_head("tagging", 5)
    logits = tagging(pooled, outputs, lengths).numpy()
    assert logits.shape == (3, 4, 5)
    np.testing.assert_array_equal(logits[0, 3:], 0.0)
    np.testing.assert_array_equal(logits[1, 1:], 0.0)
    assert np.any(logits[0, :3] != 0.0)
    assert make_head("binary", 2)(pooled, outputs, lengths).shape == (3, 1)
    assert make_head("multiclass", 4)(pooled, outputs, lengths).shape == (3, 4)
    assert make_head("multilabel", 4)(pooled, outputs, lengths).shape == (3, 4)


def test_head_bias_init_and_config_round_trip():
    head = make_head("multiclass", 3, bias_init=[0.1, 0.2, 0.3])
    head(tf.zeros([1, 2]), tf.zeros([1, 1, 2]), tf.constant([1]))
    np.testing.assert_allclose(head.dense.bias.numpy(), [0.1, 0.2, 0.3])
    clone = type(head).from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    with pytest.raises(ValueError, match="bias_init: expected 1 values, got 2"):
        make_head("binary", 2, bias_init=[0.0, 1.0])


def test_prior_bias_values():
    np.testing.assert_allclose(prior_bias("multiclass", [1, 3]), np.log([0.25, 0.75]))
    np.testing.assert_allclose(prior_bias("binary", [1, 3]), [np.log(3.0)])
    np.testing.assert_allclose(prior_bias("multilabel", [2, 5], num_examples=10),
                               [np.log(0.2 / 0.8), 0.0], atol=1e-12)
    assert prior_bias("multilabel", [2, 5]) is None  # absence is not counted
    assert prior_bias("multiclass", []) is None
    assert np.isfinite(prior_bias("multiclass", [0, 5])).all()


def test_probabilities_and_class_ids():
    logits = tf.constant([[2.0, 0.0, -1.0], [-1.0, 0.5, 0.0]])
    np.testing.assert_allclose(probabilities(logits, "multiclass").numpy().sum(axis=1), 1.0,
                               rtol=1e-6)
    np.testing.assert_allclose(probabilities(logits, "multilabel").numpy(),
                               1 / (1 + np.exp(-logits.numpy())), rtol=1e-6)
    np.testing.assert_array_equal(class_ids(logits, "multiclass").numpy(), [0, 1])
    np.testing.assert_array_equal(class_ids(logits, "multilabel").numpy(), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(class_ids(tf.constant([[0.3], [-0.2]]), "binary").numpy(), [1, 0])
    with pytest.raises(ValueError, match="head: expected one of"):
        probabilities(logits, "softmax")
