"""Padding never changes a result: extra padded steps full of garbage change no output on real
steps, no final state, no weight gradient; gradients reaching padded inputs are exactly zero."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.rnn import SequenceEncoder, convert

CONFIGS = [
    ("lstm", 1, False), ("gru", 1, False), ("rnn", 1, False), ("layer_norm_lstm", 1, False),
    ("lstm", 2, False), ("gru", 2, True), ("lstm", 2, True), ("peephole_lstm", 1, True),
]
KEEP = dict(input_keep_prob=0.8, state_keep_prob=0.8, output_keep_prob=0.8)


def _loss_and_grads(encoder, x, lengths, seed):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, final, states = encoder(x, lengths, training=True, seed=seed, return_state=True)
        loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final ** 2)
    weights = encoder.trainable_variables
    grads = tape.gradient(loss, weights + [x])
    return outputs.numpy(), final.numpy(), states, [g.numpy() for g in grads[:-1]], grads[-1].numpy()


@pytest.mark.parametrize("cell,layers,bidirectional", CONFIGS)
def test_padding_changes_nothing(cell, layers, bidirectional):
    keras.utils.set_random_seed(1)  # fixed weights: unseeded ones made gradient sizes vary run to run
    rng = np.random.default_rng(0)
    b, t, d, extra = 3, 5, 4, 4
    lengths = np.array([5, 2, 3], np.int32)
    x = rng.normal(size=[b, t, d]).astype(np.float32)
    x[1, 2:] = 1e3 * rng.normal(size=[3, d])  # garbage already inside the batch's T
    x[2, 3:] = np.nan
    padded = np.concatenate([x, 50 * rng.normal(size=[b, extra, d]).astype(np.float32)], 1)
    kwargs = dict(KEEP, update_keep_prob=0.8) if cell == "layer_norm_lstm" else KEEP
    encoder = SequenceEncoder(cell, units=5, num_layers=layers, bidirectional=bidirectional,
                              # per-step masks depend on T: use variational ones here
                              variational_recurrent=True, **kwargs)
    seed = tf.constant([5, 6])
    out_a, fin_a, st_a, g_a, gx_a = _loss_and_grads(encoder, x, lengths, seed)
    out_b, fin_b, st_b, g_b, gx_b = _loss_and_grads(encoder, padded, lengths, seed)

    assert np.isfinite(out_a).all() and np.isfinite(gx_a).all()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out_b[i, :n], out_a[i, :n], atol=1e-6)
        assert (out_b[i, n:] == 0).all() and (out_a[i, n:] == 0).all()
        assert (gx_a[i, n:] == 0).all() and (gx_b[i, n:] == 0).all()
    np.testing.assert_allclose(fin_b, fin_a, atol=1e-6)
    for row_a, row_b in zip(st_a, st_b):
        for sa, sb in zip(row_a, row_b):
            for name in sa:
                np.testing.assert_allclose(sb[name], sa[name], atol=1e-6)
    for ga, gb in zip(g_a, g_b):
        # float32 sums over a different padded T may round differently in the last bits
        np.testing.assert_allclose(gb, ga, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(gx_b[:, :t], gx_a, atol=1e-6)


def test_final_state_is_state_after_last_real_step():
    rng = np.random.default_rng(1)
    x = rng.normal(size=[1, 6, 3]).astype(np.float32)
    encoder = SequenceEncoder("lstm", units=4, bidirectional=True)
    full = encoder(x[:, :4], np.array([4], np.int32))
    cut = encoder(x, np.array([4], np.int32))
    np.testing.assert_allclose(cut[1], full[1], atol=1e-6)
    # backward final state = after reading the whole (length-4) sequence reversed:
    reversed_in = x[:, :4][:, ::-1].copy()
    fw_only = SequenceEncoder("lstm", units=4)
    fw_only(reversed_in, np.array([4], np.int32))
    convert.set_weights(fw_only.wrappers[0][0].cell,
                        convert.get_weights(encoder.wrappers[0][1].cell))
    np.testing.assert_allclose(cut[1][:, 4:], fw_only(reversed_in, np.array([4]))[1], atol=1e-6)
    # backward outputs are reversed back: output at t=0 is the backward state after all 4 steps
    np.testing.assert_allclose(cut[0][:, 0, 4:], cut[1][:, 4:], atol=1e-6)
