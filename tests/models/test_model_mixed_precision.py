"""Mixed precision: the embedding and the recurrent encoder compute in float16 / bfloat16 while
variables, pooling, head, logits and losses stay float32; the numbers follow a float32 twin with
the same weights, and padding still changes nothing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import build_model, compute_loss
from models_testlib import make_batch, pad_batch, tiny_config, to_tensors

POLICIES = {"mixed_float16": tf.float16, "mixed_bfloat16": tf.bfloat16}
# Worst relative error of one rounding: float16 keeps 11 significant bits, bfloat16 8.
TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 4e-2}
DROPOUT = {"input_keep_prob": 0.8, "state_keep_prob": 0.7, "output_keep_prob": 0.9}
CASES = [
    # (cell, pooling, tokens, extra)
    ("lstm", "mean", False, {"bidirectional": True, "mask_per_example": True, **DROPOUT}),
    ("gru", "attention", True, {"num_layers": 2, **DROPOUT}),
    ("layer_norm_lstm", "max", False, {"update_keep_prob": 0.8, **DROPOUT}),
    ("rnn", "last", False, {}),
    ("lstm", "mean", False, {"conv_layers": 2, "conv_stride": 4, "conv_filters": 6,
                             "sequence_norm": "on", **DROPOUT}),
]
SEED = tf.constant([5, 6], tf.int64)


def _run(model, batch, training):
    """(logits, loss, gradients of every trainable variable) in one forward/backward pass."""
    with tf.GradientTape() as tape:
        logits = model(to_tensors(batch), training=training, seed=SEED if training else None)
        loss = compute_loss("multiclass", logits, to_tensors(batch))
    return logits, loss, tape.gradient(loss, model.trainable_variables)


def _pair(policy, cell, pooling, tokens, extra):
    """A model under `policy` and its float32 twin holding the same weights."""
    keras.utils.set_random_seed(2)
    config = tiny_config(cell=cell, pooling=pooling, tokens=tokens, hidden_units=8, **extra)
    mixed = build_model(config, policy)
    twin = build_model(config, "float32")
    twin.set_weights(mixed.get_weights())
    return config, mixed, twin


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("cell,pooling,tokens,extra", CASES, ids=[c[0] + ("-conv" if "conv_layers" in c[3] else "") for c in CASES])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "dropout"])
def test_mixed_model_computes_in_half_precision_and_follows_its_float32_twin(
        policy, cell, pooling, tokens, extra, training):
    config, mixed, twin = _pair(policy, cell, pooling, tokens, extra)
    batch = make_batch(config)
    outputs, final, _ = mixed.encode(to_tensors(batch), training=training, seed=SEED)
    assert outputs.dtype == POLICIES[policy] and final.dtype == POLICIES[policy]
    assert {v.dtype for v in mixed.weights if "float" in v.dtype} == {"float32"}
    # The encoder's own numbers (logits alone are dominated by the prior bias at init).
    outputs_32, _, _ = twin.encode(to_tensors(batch), training=training, seed=SEED)
    np.testing.assert_allclose(tf.cast(outputs, tf.float32).numpy(), outputs_32.numpy(),
                               atol=TOLERANCE[policy] * 4 * np.abs(outputs_32.numpy()).max())

    logits, loss, grads = _run(mixed, batch, training)
    logits_32, loss_32, grads_32 = _run(twin, batch, training)  # same seed: the same masks
    assert logits.dtype == tf.float32 and loss.dtype == tf.float32
    scale = np.abs(logits_32.numpy()).max()
    np.testing.assert_allclose(logits.numpy(), logits_32.numpy(), atol=TOLERANCE[policy] * scale * 4)
    np.testing.assert_allclose(loss.numpy(), loss_32.numpy(), rtol=TOLERANCE[policy])
    for var, g, g_32 in zip(mixed.trainable_variables, grads, grads_32):
        assert g is not None and g.dtype == tf.float32, var.path
        g, g_32 = tf.convert_to_tensor(g).numpy(), tf.convert_to_tensor(g_32).numpy()
        assert np.all(np.isfinite(g)), var.path
        # The direction of each variable's gradient is what an optimizer step follows.
        cosine = np.sum(g * g_32) / max(np.linalg.norm(g) * np.linalg.norm(g_32), 1e-30)
        assert cosine > 0.95 or np.linalg.norm(g_32) < 1e-6, (var.path, cosine)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_padding_changes_nothing_under_mixed_precision(policy):
    config, mixed, _ = _pair(policy, *CASES[0][:3], CASES[0][3])
    batch = make_batch(config)
    logits, loss, grads = _run(mixed, batch, training=True)
    logits_p, loss_p, grads_p = _run(mixed, pad_batch(batch), training=True)
    np.testing.assert_allclose(logits_p.numpy(), logits.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(loss_p.numpy(), loss.numpy(), atol=1e-6, rtol=0)
    # Gradients sum over time in the compute dtype; more (zero) steps may regroup those sums, so
    # they agree to a few roundings of that dtype (relative to the gradient's size), not bit for bit.
    eps = {"mixed_float16": 2.0 ** -10, "mixed_bfloat16": 2.0 ** -7}[policy]  # machine epsilon
    for var, g, g_p in zip(mixed.trainable_variables, grads, grads_p):
        g, g_p = tf.convert_to_tensor(g).numpy(), tf.convert_to_tensor(g_p).numpy()
        assert np.abs(g_p - g).max() <= 4 * eps * np.abs(g).max() + 1e-7, var.path


def test_build_model_leaves_the_global_policy_alone():
    before = keras.config.dtype_policy().name
    model = build_model(tiny_config(), "mixed_bfloat16")
    assert keras.config.dtype_policy().name == before
    assert model.encoder.compute_dtype == "bfloat16" and model.head.compute_dtype == "float32"
