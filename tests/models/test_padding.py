"""Padding never changes a result: logits, loss and every gradient ignore steps past a length.

Each case pads a batch (whose padding already holds garbage, not zeros) with more garbage steps
and compares. The cases cover every cell, pooling, head and input kind at least once, plus
stacking, bidirectionality and training-mode (variational) dropout.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import build_model, compute_loss
from models_testlib import make_batch, pad_batch, tiny_config, to_tensors

CASES = [
    # (cell, pooling, head, tokens, extra config, training)
    ("lstm", "last", "multiclass", False, {}, False),
    ("gru", "mean", "binary", True, {}, False),
    ("rnn", "max", "multilabel", False, {"bidirectional": True}, False),
    ("layer_norm_lstm", "attention", "multiclass", True, {"num_layers": 2}, False),
    ("lstm", "last", "tagging", False, {"num_layers": 2, "bidirectional": True}, False),
    ("gru", "max", "tagging", True, {}, False),
    ("layer_norm_lstm", "mean", "binary", False,
     {"bidirectional": True, "input_keep_prob": 0.7, "state_keep_prob": 0.8,
      "output_keep_prob": 0.9, "update_keep_prob": 0.8}, True),
    ("lstm", "attention", "multilabel", True,
     {"num_layers": 2, "input_keep_prob": 0.7, "state_keep_prob": 0.8, "mask_per_example": True},
     True),
    # The convolutional front end (models/frontend.py): strided, per-sequence z-normalised,
    # with dropout; over tokens; and at stride 1 under a tagging head.
    ("lstm", "mean", "multiclass", False,
     {"conv_layers": 2, "conv_stride": 4, "conv_kernel_size": 3, "conv_filters": 5,
      "sequence_norm": "on", "bidirectional": True, "input_keep_prob": 0.8,
      "state_keep_prob": 0.8, "mask_per_example": True}, True),
    ("gru", "max", "binary", True,
     {"conv_layers": 1, "conv_stride": 2, "conv_kernel_size": 4, "conv_filters": 5}, False),
    ("lstm", "last", "tagging", False,
     {"conv_layers": 1, "conv_stride": 1, "conv_kernel_size": 3, "conv_filters": 5,
      "sequence_norm": "on"}, False),
    # Random-convolution features (models/random_conv.py), with a front end and dropout, and alone.
    ("lstm", "mean", "multiclass", False,
     {"random_features": 200, "reference_length": 40, "conv_layers": 1, "conv_stride": 2,
      "conv_kernel_size": 3, "conv_filters": 5, "input_keep_prob": 0.8}, True),
    ("gru", "last", "binary", False, {"random_features": 100, "reference_length": 20}, False),
    # The hashed n-gram bag (models/ngram_bag.py) beside the recurrence, with dropout and with a
    # front end.
    ("gru", "mean", "multiclass", True, {"ngram_orders": 3, "ngram_buckets": 64, "ngram_dim": 4},
     True),
    ("lstm", "last", "binary", True,
     {"ngram_orders": 2, "ngram_buckets": 32, "ngram_dim": 3, "conv_layers": 1, "conv_stride": 2,
      "conv_kernel_size": 3, "conv_filters": 5}, False),
]


def _forward_backward(model, head, batch, training):
    batch = to_tensors(batch)
    input_key = model.input_key
    with tf.GradientTape() as tape:
        if input_key == "features":
            tape.watch(batch["features"])
        logits = model(batch, training=training, seed=tf.constant([3, 4]) if training else None)
        loss = compute_loss(head, logits, batch)
    sources = list(model.trainable_variables)
    if input_key == "features":
        sources.append(batch["features"])
    grads = tape.gradient(loss, sources)
    grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
    return logits.numpy(), loss.numpy(), grads


def _case_id(case):
    cell, pooling, head, tokens, extra, training = case
    parts = [cell, pooling, head, "tokens" if tokens else "dense"]
    parts += ["bi"] if extra.get("bidirectional") else []
    parts += [f"{extra['num_layers']}layers"] if "num_layers" in extra else []
    parts += [f"conv{extra['conv_stride']}"] if "conv_layers" in extra else []
    parts += ["seqnorm"] if extra.get("sequence_norm") == "on" else []
    parts += [f"ngram{extra['ngram_orders']}"] if "ngram_orders" in extra else []
    parts += ["dropout"] if training else []
    return "-".join(parts)


@pytest.mark.parametrize("cell,pooling,head,tokens,extra,training", CASES,
                         ids=[_case_id(c) for c in CASES])
def test_padding_changes_nothing(cell, pooling, head, tokens, extra, training):
    keras.utils.set_random_seed(1)  # fixed weights, so the tolerance below means the same every run
    config = tiny_config(head, tokens=tokens, cell=cell, pooling=pooling, **extra)
    model = build_model(config)
    batch = make_batch(config)
    padded = pad_batch(batch)
    logits, loss, grads = _forward_backward(model, head, batch, training)
    logits_p, loss_p, grads_p = _forward_backward(model, head, padded, training)

    time_steps = batch["lengths"].max()
    if head == "tagging":
        assert logits_p.shape[1] == time_steps + 3
        np.testing.assert_array_equal(logits_p[:, time_steps:], 0.0)
        logits_p = logits_p[:, :time_steps]
    np.testing.assert_allclose(logits_p, logits, atol=1e-6, rtol=0)
    np.testing.assert_allclose(loss_p, loss, atol=1e-6, rtol=0)

    variables = model.trainable_variables
    for var, g, g_p in zip(variables, grads, grads_p):
        assert g is not None, f"no gradient reaches {var.path}"
        np.testing.assert_allclose(g_p.numpy(), g.numpy(), atol=1e-6, rtol=1e-6, err_msg=var.path)

    if tokens:
        # Only rows of real tokens get gradient; garbage ids in the padding never do.
        (table_grad,) = [g for v, g in zip(variables, grads_p) if "embedding" in v.path
                         and "ngram" not in v.path]
        real_mask = np.arange(padded["token_ids"].shape[1])[None, :] < padded["lengths"][:, None]
        real_ids = set(padded["token_ids"][real_mask].tolist())
        touched = set(np.nonzero(np.any(table_grad.numpy() != 0, axis=1))[0].tolist())
        assert touched and touched <= real_ids
    else:
        input_grad = grads_p[-1].numpy()
        real_mask = np.arange(input_grad.shape[1])[None, :] < padded["lengths"][:, None]
        assert np.all(input_grad[~real_mask] == 0.0)
        assert np.any(input_grad[real_mask] != 0.0)


@pytest.mark.parametrize("extra", [{}, {"conv_layers": 2, "conv_stride": 4, "conv_filters": 5,
                                         "sequence_norm": "on"}], ids=["plain", "frontend"])
def test_nan_in_padding_stays_out(extra):
    config = tiny_config("multiclass", pooling="mean", **extra)
    model = build_model(config)
    batch = make_batch(config)
    poisoned = dict(batch)
    features = batch["features"].copy()
    real = np.arange(features.shape[1])[None, :] < batch["lengths"][:, None]
    features[~real] = np.nan
    poisoned["features"] = features
    _, loss, grads = _forward_backward(model, "multiclass", poisoned, False)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    np.testing.assert_allclose(model(to_tensors(poisoned)).numpy(),
                               model(to_tensors(batch)).numpy(), atol=1e-6, rtol=0)
