"""EvalMetrics against hand-computed values."""

import numpy as np
import pytest
import tensorflow_probability as tfp

from models.metrics import EvalMetrics, binary_auc


def _logits(probs):
    return np.log(np.asarray(probs, np.float32))


# Top-label confidences 0.7 (right), 0.4 (wrong), 0.9 (right), 0.6 (wrong).
PROBS = [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.05, 0.9, 0.05], [0.2, 0.2, 0.6]]
LABEL = np.array([0, 1, 1, 0])


def test_multiclass_counts_f1_and_ece():
    metrics = EvalMetrics("multiclass", 3, ["a", "b", "c"], num_bins=2)
    metrics.update(_logits(PROBS[:2]), {"label": LABEL[:2]})
    metrics.update(_logits(PROBS[2:]), {"label": LABEL[2:]})
    np.testing.assert_array_equal(metrics.confusion_matrix(),
                                  [[1, 0, 1], [1, 1, 0], [0, 0, 0]])
    r = metrics.result()
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["precision/a"] == pytest.approx(0.5) and r["recall/a"] == pytest.approx(0.5)
    assert r["precision/b"] == pytest.approx(1.0) and r["recall/b"] == pytest.approx(0.5)
    assert r["f1/b"] == pytest.approx(2 / 3)
    assert r["precision/c"] == 0.0 and r["f1/c"] == 0.0
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    # Bin [0, .5): one wrong at 0.4 -> |0 - .4| * 1/4; bin [.5, 1]: acc 2/3, conf 2.2/3 -> * 3/4.
    assert r["ece"] == pytest.approx(0.4 / 4 + abs(2 / 3 - 2.2 / 3) * 3 / 4, abs=1e-6)
    ce = -np.log([0.7, 0.35, 0.9, 0.2])
    assert r["loss"] == pytest.approx(ce.mean(), rel=1e-5)
    metrics.reset()
    assert metrics.confusion_matrix().sum() == 0


def test_ece_matches_tfp_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)).astype(np.float32) * 2
    label = rng.integers(0, 4, 200)
    metrics = EvalMetrics("multiclass", 4, num_bins=10)
    metrics.update(logits, {"label": label})
    expected = tfp.stats.expected_calibration_error(10, logits=logits, labels_true=label)
    assert metrics.result()["ece"] == pytest.approx(float(expected), abs=1e-6)


def test_reliability_bins_are_the_ones_ece_is_computed_from():
    metrics = EvalMetrics("multiclass", 3, ["a", "b", "c"], num_bins=2)
    assert metrics.reliability() is None
    metrics.update(_logits(PROBS), {"label": LABEL})
    bins = metrics.reliability()
    assert bins["count"] == [1, 3]
    np.testing.assert_allclose(bins["confidence"], [0.4, 2.2 / 3], atol=1e-6)
    np.testing.assert_allclose(bins["accuracy"], [0.0, 2 / 3], atol=1e-6)
    rng = np.random.default_rng(1)
    metrics = EvalMetrics("multiclass", 4, num_bins=10)
    metrics.update(rng.normal(size=(300, 4)).astype(np.float32) * 2, {"label": rng.integers(0, 4, 300)})
    bins = metrics.reliability()
    count = np.asarray(bins["count"])
    ece = np.sum(count * np.abs(np.asarray(bins["accuracy"]) - bins["confidence"])) / count.sum()
    assert ece == pytest.approx(metrics.result()["ece"], abs=1e-5)
    binary = EvalMetrics("binary", 2, num_bins=4)
    binary.update(np.array([[2.0], [-2.0], [0.1]], np.float32), {"label": np.array([1, 1, 0])})
    assert sum(binary.reliability()["count"]) == 3
    assert EvalMetrics("multilabel", 2).reliability() is None


def test_binary_auc_threshold_and_weighted_loss():
    scores = np.array([[-2.0], [0.4], [-0.3], [1.5], [0.0]], np.float32)
    label = np.array([0, 0, 1, 1, 0])
    weight = np.array([1.0, 1.0, 2.0, 1.0, 0.0], np.float32)
    metrics = EvalMetrics("binary", 2, ["no", "yes"])
    metrics.update(scores, {"label": label, "weight": weight})
    r = metrics.result()
    # Positives -0.3, 1.5 vs negatives -2, .4, 0: pairs won 1 + 3 of 6.
    assert r["auc"] == pytest.approx(4 / 6)
    np.testing.assert_array_equal(metrics.confusion_matrix(), [[2, 1], [1, 1]])
    assert r["accuracy"] == pytest.approx(3 / 5)
    z = scores[:, 0].astype(np.float64)
    ce = np.log1p(np.exp(-np.where(label == 1, z, -z)))
    assert r["loss"] == pytest.approx((weight * ce).sum() / weight.sum(), rel=1e-5)
    # ECE ignores weights; 15 bins. Confidences sigma(2), sigma(.4), sigma(.3), sigma(1.5) and .5
    # (z = 0 predicts "no": right) fall in bins holding only right or only wrong answers, so
    # each example adds 1 - confidence when right and its confidence when wrong.
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    expected_ece = np.mean([1 - sigmoid(2.0), sigmoid(0.4), sigmoid(0.3), 1 - sigmoid(1.5), 0.5])
    assert r["ece"] == pytest.approx(expected_ece, abs=1e-6)


def test_auc_ties_count_half():
    assert binary_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert binary_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert np.isnan(binary_auc([0.1, 0.2], [1, 1]))


def test_multilabel_micro_macro_exact_match():
    logits = np.array([[1.0, -1.0, 2.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]], np.float32)
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32)
    metrics = EvalMetrics("multilabel", 3)
    metrics.update(logits, {"labels": labels})
    r = metrics.result()
    # label 0: tp 2; label 1: fp 1, fn 1; label 2: tp 1.
    assert r["exact_match"] == pytest.approx(1 / 3) == r["accuracy"]
    assert r["f1/0"] == 1.0 and r["f1/1"] == 0.0 and r["f1/2"] == 1.0
    assert r["macro_f1"] == pytest.approx(2 / 3)
    assert r["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert metrics.confusion_matrix().shape == (3, 2, 2)
    np.testing.assert_array_equal(metrics.confusion_matrix()[1], [[1, 1], [1, 0]])


def test_tagging_counts_real_steps_only():
    logits = np.zeros((2, 3, 2), np.float32)
    logits[0, :, 1] = 1.0   # predicts 1, 1, 1
    logits[1, :, 0] = 1.0   # predicts 0, 0, 0
    tags = np.array([[1, 0, 1], [0, 1, 1]])
    lengths = np.array([2, 1])
    metrics = EvalMetrics("tagging", 2)
    metrics.update(logits, {"tags": tags, "lengths": lengths})
    np.testing.assert_array_equal(metrics.confusion_matrix(), [[1, 1], [0, 1]])
    assert metrics.result()["accuracy"] == pytest.approx(2 / 3)


def test_loss_terms_from_the_eval_step_are_used():
    metrics = EvalMetrics("multiclass", 3)
    metrics.update(_logits(PROBS), {"label": LABEL}, loss=(3.0, 2.0))
    metrics.update(_logits(PROBS), {"label": LABEL}, loss=(1.0, 2.0))
    assert metrics.result()["loss"] == pytest.approx(1.0)


def test_macro_f1_ignores_classes_neither_present_nor_predicted():
    metrics = EvalMetrics("multiclass", 3, ["a", "b", "c"])
    metrics.update(_logits([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]), {"label": np.array([0, 1])})
    assert metrics.result()["macro_f1"] == pytest.approx(1.0)
