"""The `uncertainty` signature: exact without dropout, the MC average of seeded passes with it."""

import numpy as np
import pytest
import tensorflow as tf

from export.uncertainty import mc_dropout
from export_testlib import MC_SAMPLES, MC_SEED, PINNED, dense_spec, model_config
from models import ModelConfig, build_model


def _entropy(p, axis=-1):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def test_without_dropout_equals_serving_default_exactly(token_export, token_loaded):
    batch = token_export.batches[2]
    inputs = {"token_ids": batch["token_ids"], "lengths": batch["lengths"]}
    served = token_loaded.signatures["serving_default"](**inputs)
    unc = token_loaded.signatures["uncertainty"](**inputs)
    # Same computation, but each signature is its own graph and grappler may fuse the head
    # differently: equal up to float32 rounding (measured 1.2e-7), decisions identical.
    np.testing.assert_allclose(unc["probabilities"], served["probabilities"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(unc["class_ids"].numpy(), served["class_ids"].numpy())
    np.testing.assert_array_equal(unc["classes"].numpy(), served["classes"].numpy())
    np.testing.assert_array_equal(unc["mutual_information"].numpy(), 0.0)
    p = served["probabilities"].numpy()[:, 0]
    bernoulli = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    np.testing.assert_allclose(unc["predictive_entropy"], bernoulli, rtol=1e-5)


def test_with_dropout_is_the_average_of_seeded_training_passes(dense_export, dense_loaded):
    model, batch = dense_export.model, dense_export.batches[2]
    inputs = {"features": batch["features"], "lengths": batch["lengths"]}
    samples = np.stack([
        tf.nn.softmax(model(inputs, training=True, seed=tf.constant([MC_SEED, s], tf.int32))).numpy()
        for s in range(MC_SAMPLES)])
    mean = samples.mean(axis=0)
    unc = dense_loaded.signatures["uncertainty"](**inputs)
    np.testing.assert_allclose(unc["probabilities"], mean, atol=1e-6)
    predictive, expected = _entropy(mean), _entropy(samples).mean(axis=0)
    np.testing.assert_allclose(unc["predictive_entropy"], predictive, atol=1e-5)
    np.testing.assert_allclose(unc["expected_entropy"], expected, atol=1e-5)
    np.testing.assert_allclose(unc["mutual_information"], predictive - expected, atol=1e-5)
    # Dropout really varies the samples, and the answer is reproducible.
    assert unc["mutual_information"].numpy().max() > 1e-5
    served = dense_loaded.signatures["serving_default"](**inputs)["probabilities"].numpy()
    assert np.abs(unc["probabilities"].numpy() - served).max() > 1e-4
    again = dense_loaded.signatures["uncertainty"](**inputs)
    np.testing.assert_array_equal(again["probabilities"].numpy(), unc["probabilities"].numpy())
    np.testing.assert_array_equal(unc["class_ids"].numpy(), mean.argmax(-1))


@pytest.mark.parametrize("head,target", [("tagging", "tags"), ("multilabel", "labels")])
def test_per_step_and_per_label_shapes(head, target):
    config = ModelConfig(hidden_units=4, head=head, target_kind=target, num_classes=3,
                         feature_dim=2, **{**PINNED, "output_keep_prob": 0.5})
    model = build_model(config)
    lengths = tf.constant([4, 1, 2], tf.int32)
    inputs = {"features": tf.random.stateless_normal([3, 4, 2], seed=[1, 2]), "lengths": lengths}
    out = mc_dropout(model, inputs, head, num_samples=5, base_seed=3)
    if head == "tagging":
        assert out["probabilities"].shape == (3, 4, 3)
        assert out["mutual_information"].shape == (3, 4)
        past = ~tf.sequence_mask(lengths, 4).numpy()
        assert np.all(out["predictive_entropy"].numpy()[past] == 0.0)
        assert np.all(out["mutual_information"].numpy()[~past] >= 0.0)
    else:
        assert out["probabilities"].shape == out["mutual_information"].shape == (3, 3)
        assert np.all(out["mutual_information"].numpy() >= 0.0)
