"""layer_norm_lstm against a NumPy transcription of TF1 `tf.contrib.rnn.LayerNormBasicLSTMCell`.

tf.contrib is gone and tf_keras does not ship this cell, so the reference is its `__call__`
written out in NumPy: no-bias linear on [x, h], layer norm (epsilon 1e-12, as
`tf.contrib.layers.layer_norm`) on each of i, j, f, o, dropout on g = tanh(j), layer norm on
the new c, h = tanh(c) * sigmoid(o); `dynamic_rnn` copy-through past each length.
"""

import numpy as np
import tensorflow as tf

from models.rnn import DropoutMasks, SequenceEncoder, convert


def _ln(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _tf1_cell_numpy(x, lengths, kernel, norms, forget_bias, update_masks):
    """x [B, T, D]; update_masks [T, B, H] (scaled keep masks, TF1's per-step dropout)."""
    b, t, _ = x.shape
    h_size = kernel.shape[1] // 4
    c, h = np.zeros([b, h_size]), np.zeros([b, h_size])
    outputs = np.zeros([b, t, h_size])
    for step in range(t):
        z = np.concatenate([x[:, step], h], 1) @ kernel
        i, j, f, o = np.split(z, 4, 1)
        i, j, f, o = (_ln(v, *norms[s]) for v, s in
                      zip((i, j, f, o), ("input", "transform", "forget", "output")))
        g = np.tanh(j) * update_masks[step]
        new_c = _ln(c * _sigmoid(f + forget_bias) + _sigmoid(i) * g, *norms["state"])
        new_h = np.tanh(new_c) * _sigmoid(o)
        valid = (step < lengths)[:, None]
        c, h = np.where(valid, new_c, c), np.where(valid, new_h, h)
        outputs[:, step] = np.where(valid, new_h, 0)
    return outputs, c, h


def test_layer_norm_lstm_matches_tf1_formulas():
    rng = np.random.default_rng(0)
    b, t, d, h = 3, 6, 4, 5
    x = rng.normal(size=[b, t, d]).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int32)
    kernel = rng.normal(size=[d + h, 4 * h]).astype(np.float32) * 0.5
    norms = {s: (1 + 0.1 * rng.normal(size=h), 0.1 * rng.normal(size=h))
             for s in ("input", "transform", "forget", "output", "state")}
    update = (rng.random([t, b, h]) < 0.7) / 0.7
    encoder = SequenceEncoder("layer_norm_lstm", units=h, forget_bias=0.8, update_keep_prob=0.7,
                              variational_recurrent=False, mask_per_example=True)
    encoder(x, lengths)
    convert.set_weights(encoder.wrappers[0][0].cell,
                        convert.layer_norm_lstm_from_tf1(kernel, norms, d))
    masks = [[DropoutMasks(state=(None, None), update=tf.constant(update, tf.float32))]]
    outputs, final, states = encoder(x, lengths, training=True, masks=masks, return_state=True)
    want_out, want_c, want_h = _tf1_cell_numpy(x, lengths, kernel, norms, 0.8, update)
    np.testing.assert_allclose(outputs, want_out, atol=1e-5)
    np.testing.assert_allclose(states[0][0]["c"], want_c, atol=1e-5)
    np.testing.assert_allclose(final, want_h, atol=1e-5)
    # The mask matters (the test can fail): without it the result differs.
    assert np.abs(encoder(x, lengths)[0].numpy() - want_out).max() > 1e-3
