"""The `uncertainty` signature: exact without dropout, the MC average of seeded passes with it,
and a sequence's answer independent of the batch it is served in (TF Serving batches requests)."""

import numpy as np
import pytest
import tensorflow as tf

from export.uncertainty import example_hashes, mc_dropout, sample_seeds
from export_testlib import MC_SAMPLES, MC_SEED, dense_spec, make_batches, model_config, token_spec
from models import ModelConfig, build_model
from testlib import PINNED

OUTPUTS = ("probabilities", "predictive_entropy", "expected_entropy", "mutual_information")


def _entropy(p, axis=-1):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


@pytest.mark.slow  # the shared exports
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


def _alone(inputs, key, b, padding=0, fill=0.0):
    """Row b of a batch dict by itself, cut to its length plus `padding` steps holding `fill`."""
    length = int(inputs["lengths"][b])
    values = inputs[key][b:b + 1, :length]
    pad = [[0, 0], [0, padding]] + [[0, 0]] * (len(values.shape) - 2)
    return {key: tf.pad(values, pad, constant_values=fill), "lengths": inputs["lengths"][b:b + 1]}


@pytest.mark.slow  # the shared exports
def test_with_dropout_is_the_average_of_seeded_passes_of_each_sequence_alone(dense_export, dense_loaded):
    model, batch = dense_export.model, dense_export.batches[2]
    inputs = {"features": batch["features"], "lengths": batch["lengths"]}
    hashes = example_hashes(inputs["features"], inputs["lengths"], MC_SEED)
    # Sequence b's sample s: the model on b alone (a batch of 1), with the stateless seed [h_b, s].
    alone = tf.function(lambda x, seed: tf.nn.softmax(model(x, training=True, seed=seed)), reduce_retracing=True)
    samples = np.stack([np.concatenate([
        alone(_alone(inputs, "features", b), tf.stack([hashes[b], s])).numpy()
        for b in range(len(batch["lengths"]))]) for s in range(MC_SAMPLES)])
    mean = samples.mean(axis=0)
    unc = dense_loaded.signatures["uncertainty"](**inputs)
    np.testing.assert_allclose(unc["probabilities"], mean, atol=1e-6)
    predictive, expected = _entropy(mean), _entropy(samples).mean(axis=0)
    np.testing.assert_allclose(unc["predictive_entropy"], predictive, atol=1e-5)
    np.testing.assert_allclose(unc["expected_entropy"], expected, atol=1e-5)
    np.testing.assert_allclose(unc["mutual_information"], predictive - expected, atol=1e-5)
    # Dropout really varies the samples (still MC dropout), and the answer is reproducible.
    assert np.abs(samples[0] - samples[1]).max() > 1e-3
    assert unc["mutual_information"].numpy().max() > 1e-5
    served = dense_loaded.signatures["serving_default"](**inputs)["probabilities"].numpy()
    assert np.abs(unc["probabilities"].numpy() - served).max() > 1e-4
    again = dense_loaded.signatures["uncertainty"](**inputs)
    np.testing.assert_array_equal(again["probabilities"].numpy(), unc["probabilities"].numpy())
    np.testing.assert_array_equal(unc["class_ids"].numpy(), mean.argmax(-1))


def _same_answers(run, inputs, key, fill):
    """Asserts that row 0 of `inputs` gets the same MC outputs alone, at positions 0 and 5 of a
    batch of 8 (with rows 1..7 of `inputs`), and with 7 more padding steps holding `fill`.
    run: inputs dict -> outputs dict. Returns the outputs for row 0 alone."""
    rows = [_alone(inputs, key, b) for b in range(8)]
    width = max(int(row["lengths"][0]) for row in rows)

    def batch(order):
        padded = [_alone(rows[b], key, 0, padding=width - int(rows[b]["lengths"][0]), fill=fill) for b in order]
        return {k: tf.concat([row[k] for row in padded], 0) for k in (key, "lengths")}

    alone = run(rows[0])
    cases = [(run(batch(range(8))), 0), (run(batch([1, 2, 3, 4, 5, 0, 6, 7])), 5),
             (run(_alone(inputs, key, 0, padding=7, fill=fill)), 0)]
    for name in OUTPUTS:
        for got, row in cases:
            np.testing.assert_allclose(got[name].numpy()[row], alone[name].numpy()[0], rtol=0, atol=1e-6,
                                       err_msg=name)
    return alone


@pytest.mark.slow  # the shared exports
def test_a_served_sequence_gets_the_same_answer_in_any_batch_at_any_position(dense_export, dense_loaded):
    batch = dense_export.batches[0]
    inputs = {"features": batch["features"], "lengths": batch["lengths"]}
    signature = dense_loaded.signatures["uncertainty"]
    # Padding may hold anything (it is never read): here values far from any real step.
    alone = _same_answers(lambda x: signature(**x), inputs, "features", fill=123.0)
    assert alone["mutual_information"].numpy()[0] > 0.0


@pytest.mark.slow  # MC dropout traced and run for every batch size and position
@pytest.mark.parametrize("hyper", [
    dict(variational_recurrent=False),  # a fresh mask every step
    dict(bidirectional=True, mask_per_example=False),  # TF1's batch-shared masks
], ids=["per-step-masks", "bidirectional-shared-masks"])
def test_batch_independence_holds_for_every_mask_layout(hyper):
    tf.keras.utils.set_random_seed(1)
    spec = dense_spec()
    model = build_model(model_config(spec, hidden_units=6, input_keep_prob=0.8, state_keep_prob=0.7,
                                     output_keep_prob=0.8, **hyper))
    batch = _batch(spec)
    # Traced once for every batch size and length, as a serving signature is.
    run = tf.function(lambda x: mc_dropout(model, x, "multiclass", num_samples=4, base_seed=5),
                      input_signature=[{"features": tf.TensorSpec([None, None, spec.feature_dim], tf.float32),
                                        "lengths": tf.TensorSpec([None], tf.int32)}])
    _same_answers(run, {"features": batch["features"], "lengths": batch["lengths"]}, "features",
                  fill=float("nan"))
    empty = run({"features": tf.zeros([0, 3, spec.feature_dim]), "lengths": tf.zeros([0], tf.int32)})
    assert empty["probabilities"].shape == (0, spec.num_classes)


@pytest.mark.slow  # MC dropout for every batch size and position
def test_token_sequences_too_and_the_hash_sees_only_real_steps():
    spec = token_spec()
    tf.keras.utils.set_random_seed(2)
    model = build_model(model_config(spec, cell="gru", hidden_units=6, embedding_dim=4,
                                     output_keep_prob=0.6, mask_per_example=True))
    batch = _batch(spec)
    inputs = {"token_ids": batch["token_ids"], "lengths": batch["lengths"]}
    run = lambda x: mc_dropout(model, x, "binary", num_samples=4, base_seed=5)
    _same_answers(run, inputs, "token_ids", fill=3)
    ids, lengths = inputs["token_ids"], inputs["lengths"]
    garbage = tf.where(tf.sequence_mask(lengths, tf.shape(ids)[1]), ids, 7)
    np.testing.assert_array_equal(example_hashes(ids, lengths, 5), example_hashes(garbage, lengths, 5))
    assert len(set(example_hashes(ids, lengths, 5).numpy())) > 1  # sequences differ, so do seeds
    assert not np.array_equal(example_hashes(ids, lengths, 5), example_hashes(ids, lengths, 6))
    seeds = sample_seeds(example_hashes(ids, lengths, 5), 3)
    assert seeds.shape == (len(lengths), 2) and np.all(seeds.numpy()[:, 1] == 3)


def _batch(spec):
    return make_batches(spec, count=1, size=8, seed=4)[0]
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


def test_minus_zero_hashes_as_zero_in_a_tf1_session_too(tmp_path):
    """A feature of -0.0 is 0.0 to the model, so it must be to the MC seeds: in a SavedModel
    loaded into a TF1 session (as TF Serving runs it), grappler removed the `+ 0.0` that made
    them one value, every sequence holding a -0.0 got other dropout masks than in TF2, and the
    export's session check failed (seen on rounded JSON data: -0.0 after rounding)."""
    from export.uncertainty import example_hashes

    class Hasher(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def __call__(self, values, lengths):
            return {"hashes": example_hashes(values, lengths, 7)}

    module = Hasher()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.__call__})
    values = np.array([[[-0.0, 1.5], [2.0, -0.0]], [[0.0, 1.5], [2.0, 0.0]]], np.float32)
    lengths = np.array([2, 2], np.int32)
    eager = module(tf.constant(values), tf.constant(lengths))["hashes"].numpy()
    assert eager[0] == eager[1]
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        signature = v1.saved_model.loader.load(session, ["serve"], str(tmp_path)).signature_def[
            "serving_default"]
        hashes = session.run(signature.outputs["hashes"].name,
                             {signature.inputs["values"].name: values,
                              signature.inputs["lengths"].name: lengths})
    np.testing.assert_array_equal(hashes, eager)
