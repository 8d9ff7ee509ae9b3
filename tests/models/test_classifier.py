"""SequenceClassifier behaviour: shapes, training, priors, config round trip, dropout, seeds,
compilation and TFLite conversion."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from models import SequenceClassifier, build_model, compute_loss, probabilities
from models.config import ModelConfig
from models_testlib import make_batch, tiny_config, to_tensors


@pytest.mark.parametrize("head,shape", [("multiclass", (3, 3)), ("binary", (3, 1)),
                                        ("multilabel", (3, 3)), ("tagging", (3, 5, 3))])
def test_output_shapes(head, shape):
    config = tiny_config(head, pooling="mean")
    model = build_model(config)
    batch = to_tensors(make_batch(config))
    assert tuple(model(batch).shape) == shape
    assert tuple(model.embed(batch).shape) == (3, 4)


def test_embed_width_follows_bidirectional_encoder():
    model = build_model(tiny_config("multiclass", bidirectional=True, num_layers=2))
    assert tuple(model.embed(to_tensors(make_batch(model.model_config))).shape) == (3, 8)


def _auto(head, **kwargs):
    return ModelConfig(**{**tiny_config(head, **kwargs).to_dict(), "head": "auto"})


def test_auto_head_resolution():
    assert _auto("multiclass", num_classes=2).resolved_head == "binary"
    assert _auto("multiclass", num_classes=3).resolved_head == "multiclass"
    assert _auto("multilabel").resolved_head == "multilabel"
    assert _auto("tagging").resolved_head == "tagging"
    model = build_model(_auto("binary"))
    assert tuple(model(to_tensors(make_batch(model.model_config))).shape) == (3, 1)


@pytest.mark.parametrize("head,tokens,extra", [
    ("multiclass", True, {"cell": "layer_norm_lstm", "pooling": "attention", "num_layers": 2,
                          "bidirectional": True, "update_keep_prob": 0.9, "input_keep_prob": 0.9}),
    ("tagging", False, {"cell": "gru", "pooling": "max", "state_keep_prob": 0.9}),
])
def test_train_step_updates_every_parameter(head, tokens, extra):
    config = tiny_config(head, tokens=tokens, **extra)
    model = build_model(config)
    batch = to_tensors(make_batch(config))
    optimizer = keras.optimizers.Adam(1e-2)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = compute_loss(head, model(batch, training=True, seed=tf.constant([1, 2])), batch)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert len(before) >= 4
    for var, old in zip(model.trainable_variables, before):
        assert np.any(var.numpy() != old), f"{var.path} did not change"


@pytest.mark.parametrize("head,counts,expected", [
    ("multiclass", (1.0, 2.0, 7.0), [0.1, 0.2, 0.7]),
    ("tagging", (5.0, 3.0, 2.0), [0.5, 0.3, 0.2]),
    ("binary", (3.0, 1.0), [0.25]),
    ("multilabel", (2.0, 5.0, 9.0), [0.2, 0.5, 0.9]),  # num_train_examples=10
])
def test_prior_bias_predicts_base_rate(head, counts, expected):
    config = tiny_config(head, num_classes=len(counts), class_counts=counts)
    model = build_model(config)
    bias = model.head.dense.bias
    np.testing.assert_allclose(probabilities(bias[None], head).numpy()[0], expected, atol=1e-6)
    # A whole model starts near the base rate: the representation is small next to the bias.
    batch = to_tensors(make_batch(config, lengths=(5,) * 16))
    probs = probabilities(model(batch), head).numpy().reshape(-1, len(expected))
    np.testing.assert_allclose(probs.mean(axis=0), expected, atol=0.03)


def test_prior_bias_off_gives_zero_bias():
    model = build_model(tiny_config("multiclass", prior_bias_init=False))
    np.testing.assert_array_equal(model.head.dense.bias.numpy(), 0.0)


def test_feature_normalisation_uses_config_constants():
    config = tiny_config("multiclass")
    model = build_model(config)
    batch = make_batch(config)
    plain = build_model(ModelConfig(**{**config.to_dict(), "feature_mean": (), "feature_std": ()}))
    plain.set_weights(model.get_weights())
    normalised = dict(batch, features=(batch["features"] - np.float32([0.5, -1.0, 2.0]))
                      / np.float32([2.0, 1.0, 0.5]))
    np.testing.assert_allclose(plain(to_tensors(normalised)).numpy(),
                               model(to_tensors(batch)).numpy(), atol=1e-5)


@pytest.mark.parametrize("head,tokens,pooling", [("multiclass", True, "attention"),
                                                 ("tagging", False, "max")])
def test_config_round_trip_gives_same_logits(head, tokens, pooling):
    config = tiny_config(head, tokens=tokens, pooling=pooling, bidirectional=True)
    model = build_model(config)
    saved = json.loads(json.dumps(model.get_config()))
    clone = SequenceClassifier.from_config(saved)
    assert clone.model_config == config
    batch = to_tensors(make_batch(config))
    clone(batch)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(batch).numpy(), model(batch).numpy())


def test_checkpoint_restores_before_the_first_step(tmp_path):
    config = tiny_config("multiclass", tokens=True, pooling="attention", num_layers=2)
    model = build_model(config)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh = build_model(config)
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    for restored, original in zip(fresh.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(restored.numpy(), original.numpy(), err_msg=original.path)
    batch = to_tensors(make_batch(config))
    np.testing.assert_array_equal(fresh(batch).numpy(), model(batch).numpy())


def test_lengths_past_time_mean_whole_sequence():
    config = tiny_config("multiclass", pooling="mean")
    model = build_model(config)
    batch = make_batch(config, lengths=(5, 5, 5))
    too_long = dict(batch, lengths=np.array([9, 5, 6], np.int32))
    np.testing.assert_allclose(model(to_tensors(too_long)).numpy(),
                               model(to_tensors(batch)).numpy(), atol=1e-6)


def test_dropout_only_when_training_and_seeded():
    config = tiny_config("multiclass", input_keep_prob=0.6, state_keep_prob=0.6,
                         output_keep_prob=0.6)
    model = build_model(config)
    batch = to_tensors(make_batch(config))
    inference = model(batch, training=False).numpy()
    np.testing.assert_array_equal(model(batch, training=False).numpy(), inference)
    seed_a, seed_b = tf.constant([1, 2]), tf.constant([1, 3])
    train_a = model(batch, training=True, seed=seed_a).numpy()
    assert not np.allclose(train_a, inference)
    np.testing.assert_array_equal(model(batch, training=True, seed=seed_a).numpy(), train_a)
    assert not np.allclose(model(batch, training=True, seed=seed_b).numpy(), train_a)

    no_dropout = build_model(tiny_config("multiclass"))
    np.testing.assert_array_equal(no_dropout(batch, training=True, seed=seed_a).numpy(),
                                  no_dropout(batch, training=False).numpy())


def test_other_batch_keys_are_ignored():
    config = tiny_config("multiclass", tokens=True)
    model = build_model(config)
    batch = to_tensors(make_batch(config))
    extended = dict(batch, text=tf.constant([b"a b", b"c", b"d e f"]), id=tf.constant([7, 8, 9]))
    np.testing.assert_array_equal(model(extended).numpy(), model(batch).numpy())


@pytest.mark.parametrize("jit", [False, True])
def test_compiled_matches_eager(jit):
    config = tiny_config("multiclass", pooling="attention", bidirectional=True,
                         input_keep_prob=0.8)
    model = build_model(config)
    batch = to_tensors(make_batch(config))
    spec = {"features": tf.TensorSpec([None, None, 3], tf.float32),
            "lengths": tf.TensorSpec([None], tf.int32)}

    @tf.function(input_signature=[spec, tf.TensorSpec([2], tf.int32)], jit_compile=jit)
    def step(inputs, seed):
        return model(inputs, training=False), model(inputs, training=True, seed=seed)

    inputs = {k: batch[k] for k in spec}
    infer, train = step(inputs, tf.constant([5, 6]))
    np.testing.assert_allclose(infer.numpy(), model(inputs).numpy(), atol=1e-5)
    np.testing.assert_array_equal(step(inputs, tf.constant([5, 6]))[1].numpy(), train.numpy())
    assert not np.allclose(step(inputs, tf.constant([5, 7]))[1].numpy(), train.numpy())
    if not jit:
        # XLA draws different stateless random numbers than the TF kernels for the same seed
        # (even with alg="philox"), so only the non-XLA graph can match eager masks.
        eager = model(inputs, training=True, seed=tf.constant([5, 6]))
        np.testing.assert_allclose(train.numpy(), eager.numpy(), atol=1e-5)


def _run_tflite(flatbuffer, feeds):
    """Runs a converted model on `feeds` (inputs in signature order), resizing B and T."""
    interpreter = Interpreter(model_content=flatbuffer)
    details = sorted(interpreter.get_input_details(), key=lambda d: len(d["shape"]))
    feeds = sorted(feeds, key=np.ndim)
    for d, value in zip(details, feeds):
        interpreter.resize_tensor_input(d["index"], value.shape)
    interpreter.allocate_tensors()
    for d, value in zip(details, feeds):
        interpreter.set_tensor(d["index"], value)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("head,tokens,extra", [
    ("multiclass", True, {"cell": "gru", "pooling": "attention", "bidirectional": True}),
    ("tagging", False, {"cell": "lstm", "pooling": "max", "num_layers": 2}),
    ("multilabel", False, {"cell": "layer_norm_lstm", "pooling": "max"}),
    ("binary", True, {"cell": "rnn", "pooling": "last"}),
    ("multiclass", False, {"pooling": "mean", "bidirectional": True, "conv_layers": 2,
                           "conv_stride": 8, "conv_filters": 4, "sequence_norm": "on"}),
    ("multiclass", True, {"pooling": "max", "conv_layers": 1, "conv_stride": 2,
                          "conv_kernel_size": 4, "conv_filters": 4}),
])
def test_converts_to_tflite_with_builtins_only(head, tokens, extra):
    config = tiny_config(head, tokens=tokens, **extra)
    model = build_model(config)
    key = model.input_key
    spec = (tf.TensorSpec([None, None], tf.int32) if tokens
            else tf.TensorSpec([None, None, 3], tf.float32))

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
    def serve(inputs, lengths):
        return probabilities(model({key: inputs, "lengths": lengths}), head)

    # No trackable object: the variables are frozen into constants. (Passed one, TF 2.21 keeps
    # them as resource variables that the interpreter leaves uninitialised: garbage outputs.)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    for lengths in [(6, 2, 4, 1), (3, 9)]:
        batch = make_batch(config, lengths=lengths)
        got = _run_tflite(flatbuffer, [batch[key], batch["lengths"]])
        want = serve(tf.constant(batch[key]), tf.constant(batch["lengths"])).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
