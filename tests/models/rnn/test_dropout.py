"""Dropout semantics: masks per call not per step, seeds, per-example option, c untouched,
expectation preserved, inference deterministic."""

import numpy as np
import pytest
import tensorflow as tf

from models.rnn import SequenceEncoder
from models.rnn.cells import get_cell
from models.rnn.dropout import DropoutWrapper, keep_mask

SEED_A, SEED_B = tf.constant([1, 2]), tf.constant([3, 4])


def _wrapper(cell="lstm", **kwargs):
    wrapper = DropoutWrapper(get_cell(cell, units=6), **kwargs)
    wrapper.build((None, 5))
    return wrapper


def test_keep_mask_values_and_rate():
    mask = keep_mask(0.75, [200, 500], tf.constant([7, 7])).numpy()
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask > 0).mean() - 0.75) < 0.01


def test_variational_masks_constant_over_time_and_shared_by_batch():
    masks = _wrapper(input_keep_prob=0.5, state_keep_prob=0.5, output_keep_prob=0.5
                     ).draw_masks(SEED_A, 4, 9)
    assert masks.input.shape == (1, 5) and masks.output.shape == (1, 6)
    assert masks.state[0] is None and masks.state[1].shape == (1, 6)  # c never, h yes


def test_per_example_masks_differ_across_examples():
    masks = _wrapper(state_keep_prob=0.5, mask_per_example=True).draw_masks(SEED_A, 8, 9)
    h = masks.state[1].numpy()
    assert h.shape == (8, 6)
    assert len({row.tobytes() for row in h}) > 1


def test_non_variational_masks_fresh_each_step():
    masks = _wrapper(state_keep_prob=0.5, variational_recurrent=False).draw_masks(SEED_A, 4, 9)
    h = masks.state[1].numpy()
    assert h.shape == (9, 4, 6)
    assert any(not np.array_equal(h[0], h[t]) for t in range(1, 9))


def test_keep_prob_one_draws_nothing():
    masks = _wrapper().draw_masks(SEED_A, 4, 9)
    assert masks.input is None and masks.output is None and masks.state == (None, None)


def test_masks_depend_on_seed_and_reproduce():
    wrapper = _wrapper(input_keep_prob=0.5)
    a1, a2 = wrapper.draw_masks(SEED_A, 4, 9), wrapper.draw_masks(SEED_A, 4, 9)
    b = wrapper.draw_masks(SEED_B, 4, 9)
    np.testing.assert_array_equal(a1.input, a2.input)
    assert not np.array_equal(a1.input, b.input)


def test_rejects_rates_passed_as_keep_probs():
    with pytest.raises(ValueError):
        _wrapper(input_keep_prob=0.0)
    with pytest.raises(ValueError):
        _wrapper(update_keep_prob=0.5)  # only layer_norm_lstm has update dropout


def _encoder(**kwargs):
    encoder = SequenceEncoder("lstm", units=6, num_layers=2, seed=3, **kwargs)
    return encoder


def test_c_is_never_state_dropped():
    """With only state dropout, c of the first step equals the no-dropout c (c1 depends on
    h0 = 0 only), whereas h1 is dropped."""
    x = np.random.default_rng(0).normal(size=[4, 1, 5]).astype(np.float32)
    lengths = np.ones([4], np.int32)
    encoder = _encoder(state_keep_prob=0.5)
    _, _, plain = encoder(x, lengths, return_state=True)
    _, _, dropped = encoder(x, lengths, training=True, seed=SEED_A, return_state=True)
    np.testing.assert_allclose(dropped[0][0]["c"], plain[0][0]["c"], atol=1e-7)
    h = dropped[0][0]["h"].numpy()
    assert (h == 0).all(axis=0).any()  # a unit dropped for the whole batch (shared mask)


def test_training_masks_change_per_call_and_seed_reproduces():
    x = np.random.default_rng(0).normal(size=[4, 6, 5]).astype(np.float32)
    lengths = np.array([6, 4, 2, 5], np.int32)
    encoder = _encoder(input_keep_prob=0.7, state_keep_prob=0.7, output_keep_prob=0.7)
    step = tf.function(lambda x, l: encoder(x, l, training=True)[0])
    first, second = step(x, lengths).numpy(), step(x, lengths).numpy()
    assert np.abs(first - second).max() > 1e-3  # fresh masks every call, inside tf.function
    seeded = tf.function(lambda x, l, s: encoder(x, l, training=True, seed=s)[0])
    np.testing.assert_array_equal(seeded(x, lengths, SEED_A), seeded(x, lengths, SEED_A))
    assert np.abs(seeded(x, lengths, SEED_A) - seeded(x, lengths, SEED_B)).max() > 1e-3


def test_output_mask_constant_over_time():
    """Output dropout only: units zeroed at one real step are zeroed at every real step."""
    x = np.random.default_rng(0).normal(size=[3, 8, 5]).astype(np.float32)
    lengths = np.full([3], 8, np.int32)
    encoder = SequenceEncoder("gru", units=16, output_keep_prob=0.5)
    outputs = encoder(x, lengths, training=True, seed=SEED_A)[0].numpy()
    zero = outputs == 0
    assert zero.any()
    assert (zero == zero[:, :1]).all() and (zero == zero[:1]).all()


def test_inference_is_deterministic_and_dropout_free():
    x = np.random.default_rng(0).normal(size=[4, 6, 5]).astype(np.float32)
    lengths = np.array([6, 4, 2, 5], np.int32)
    encoder = _encoder(input_keep_prob=0.5, state_keep_prob=0.5, output_keep_prob=0.5)
    a, b = encoder(x, lengths)[0], encoder(x, lengths, seed=SEED_A)[0]
    np.testing.assert_array_equal(a, b)
    reference = _encoder()
    reference(x, lengths)
    reference.set_weights(encoder.get_weights())
    np.testing.assert_allclose(a, reference(x, lengths)[0], atol=1e-7)


def test_expectation_preserved():
    """Mean of the first layer's input-projected pre-activations over many masks equals the
    no-dropout value: a single RNN step with identity-like use (outputs averaged)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=[2, 1, 5]).astype(np.float32)
    lengths = np.ones([2], np.int32)
    encoder = SequenceEncoder("rnn", units=8, input_keep_prob=0.6, output_keep_prob=0.7)
    encoder(x, lengths)
    cell = encoder.wrappers[0][0].cell
    cell.recurrent_kernel.assign(np.zeros([8, 8], np.float32))
    cell.kernel.assign(cell.kernel * 0.05)  # near-linear tanh so E[tanh] ~ tanh(E)
    plain = encoder(x, lengths)[0].numpy()
    draws = 4000
    xs = np.repeat(x, draws, axis=0)
    big = SequenceEncoder("rnn", units=8, input_keep_prob=0.6, output_keep_prob=0.7,
                          mask_per_example=True)
    big(xs, np.ones([2 * draws], np.int32))
    big.set_weights(encoder.get_weights())
    out = big(xs, np.ones([2 * draws], np.int32), training=True, seed=SEED_A)[0].numpy()
    mean = out.reshape(2, draws, 1, 8).mean(axis=1)
    spread = out.reshape(2, draws, 1, 8).std(axis=1) / np.sqrt(draws)
    assert np.all(np.abs(mean - plain) < 5 * spread + 1e-4), (mean, plain)
