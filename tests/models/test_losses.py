"""Losses against hand computations in numpy."""

import numpy as np
import pytest
import tensorflow as tf

from models.losses import class_weights_from_counts, compute_loss, loss_terms


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _log_sigmoid(z):
    return -np.log1p(np.exp(-np.asarray(z, np.float64)))


LOGITS = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [-1.0, -1.0, 3.0]], np.float32)
LABEL = np.array([0, 2, 1], np.int32)
WEIGHT = np.array([1.0, 3.0, 0.5], np.float32)


def test_multiclass_weighted_mean():
    ce = -_log_softmax(LOGITS)[np.arange(3), LABEL]
    batch = {"label": LABEL, "weight": WEIGHT}
    total, weight = loss_terms("multiclass", LOGITS, batch)
    np.testing.assert_allclose(total.numpy(), (WEIGHT * ce).sum(), rtol=1e-6)
    np.testing.assert_allclose(weight.numpy(), WEIGHT.sum(), rtol=1e-6)
    np.testing.assert_allclose(compute_loss("multiclass", LOGITS, {"label": LABEL}).numpy(),
                               ce.mean(), rtol=1e-6)


def test_multiclass_label_smoothing():
    s = 0.2
    targets = np.full((3, 3), s / 3)
    targets[np.arange(3), LABEL] += 1 - s
    expected = (-(targets * _log_softmax(LOGITS)).sum(axis=1) * WEIGHT).sum() / WEIGHT.sum()
    got = compute_loss("multiclass", LOGITS, {"label": LABEL, "weight": WEIGHT}, label_smoothing=s)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_class_weights_scale_numerator_and_denominator():
    cw = np.array([2.0, 1.0, 0.25], np.float32)
    ce = -_log_softmax(LOGITS)[np.arange(3), LABEL]
    w = WEIGHT * cw[LABEL]
    total, weight = loss_terms("multiclass", LOGITS, {"label": LABEL, "weight": WEIGHT},
                               class_weights=cw)
    np.testing.assert_allclose(total.numpy(), (w * ce).sum(), rtol=1e-6)
    np.testing.assert_allclose(weight.numpy(), w.sum(), rtol=1e-6)


def test_binary_with_smoothing_and_class_weights():
    z = np.array([[1.5], [-0.5], [0.2]], np.float32)
    y = np.array([1, 0, 0], np.int32)
    s, cw = 0.1, np.array([1.0, 4.0], np.float32)
    t = y * (1 - s) + 0.5 * s
    per = -(t * _log_sigmoid(z[:, 0]) + (1 - t) * _log_sigmoid(-z[:, 0]))
    w = WEIGHT * cw[y]
    got = compute_loss("binary", z, {"label": y, "weight": WEIGHT}, label_smoothing=s,
                       class_weights=cw)
    np.testing.assert_allclose(got.numpy(), (w * per).sum() / w.sum(), rtol=1e-6)


def test_multilabel_mean_over_labels_and_positive_weights():
    y = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], np.float32)
    pos_weight = np.array([1.0, 3.0, 0.5], np.float32)
    per = -(y * pos_weight * _log_sigmoid(LOGITS) + (1 - y) * _log_sigmoid(-LOGITS)).mean(axis=1)
    got = compute_loss("multilabel", LOGITS, {"labels": y, "weight": WEIGHT},
                       class_weights=pos_weight)
    np.testing.assert_allclose(got.numpy(), (WEIGHT * per).sum() / WEIGHT.sum(), rtol=1e-6)
    plain = -(y * _log_sigmoid(LOGITS) + (1 - y) * _log_sigmoid(-LOGITS)).mean(axis=1)
    np.testing.assert_allclose(compute_loss("multilabel", LOGITS, {"labels": y}).numpy(),
                               plain.mean(), rtol=1e-6)


def test_tagging_averages_over_real_steps_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    logits[0, 3] = [1e4, -1e4, 0.0]  # padding: huge, and tags there are out of range
    lengths = np.array([3, 1], np.int32)
    tags = np.array([[0, 2, 1, 99], [1, -5, 77, 3]], np.int32)
    weight = np.array([1.0, 2.0], np.float32)
    ce = -_log_softmax(logits)
    real = [(0, 0), (0, 1), (0, 2), (1, 0)]
    num = sum(weight[b] * ce[b, t, tags[b, t]] for b, t in real)
    den = weight[0] * 3 + weight[1] * 1
    batch = {"tags": tags, "lengths": lengths, "weight": weight}
    total, total_weight = loss_terms("tagging", logits, batch)
    np.testing.assert_allclose(total.numpy(), num, rtol=1e-6)
    np.testing.assert_allclose(total_weight.numpy(), den, rtol=1e-6)
    assert np.isfinite(compute_loss("tagging", logits, batch, label_smoothing=0.1).numpy())


def test_terms_add_up_across_a_split_batch():
    batch = {"label": LABEL, "weight": WEIGHT}
    whole = compute_loss("multiclass", LOGITS, batch)
    a = loss_terms("multiclass", LOGITS[:1], {k: v[:1] for k, v in batch.items()})
    b = loss_terms("multiclass", LOGITS[1:], {k: v[1:] for k, v in batch.items()})
    np.testing.assert_allclose(((a[0] + b[0]) / (a[1] + b[1])).numpy(), whole.numpy(), rtol=1e-6)


def test_zero_total_weight_gives_zero_not_nan():
    batch = {"label": LABEL, "weight": np.zeros(3, np.float32)}
    assert compute_loss("multiclass", LOGITS, batch).numpy() == 0.0


def test_works_inside_tf_function():
    fn = tf.function(lambda logits, label: compute_loss("multiclass", logits, {"label": label}),
                     jit_compile=True)
    np.testing.assert_allclose(fn(tf.constant(LOGITS), tf.constant(LABEL)).numpy(),
                               compute_loss("multiclass", LOGITS, {"label": LABEL}).numpy(),
                               rtol=1e-6)


def test_balanced_class_weights():
    np.testing.assert_allclose(class_weights_from_counts([1, 3], "balanced"), [2.0, 2.0 / 3.0])
    np.testing.assert_allclose(class_weights_from_counts([2, 5], "balanced", head="multilabel",
                                                         num_examples=10), [4.0, 1.0])
    assert class_weights_from_counts([1, 3], "none") is None
    with pytest.raises(ValueError, match="class_weighting: expected"):
        class_weights_from_counts([1, 3], "inverse")
    with pytest.raises(ValueError, match="num_examples > 0"):
        class_weights_from_counts([1, 3], "balanced", head="multilabel")


def test_class_weights_may_be_a_captured_tensor():
    cw = tf.constant([2.0, 1.0, 0.25])
    fn = tf.function(lambda logits, label: compute_loss(
        "multiclass", logits, {"label": label}, class_weights=cw), jit_compile=True)
    expected = compute_loss("multiclass", LOGITS, {"label": LABEL}, class_weights=[2.0, 1.0, 0.25])
    np.testing.assert_allclose(fn(tf.constant(LOGITS), tf.constant(LABEL)).numpy(),
                               expected.numpy(), rtol=1e-6)
