"""SequenceEncoder plumbing: shapes, config round trip, tf.function and XLA, registry."""

import numpy as np
import pytest
import tensorflow as tf

from models import config as model_config
from models.rnn import CELLS, SequenceEncoder

X = np.random.default_rng(0).normal(size=[3, 7, 4]).astype(np.float32)
LENGTHS = np.array([7, 3, 5], np.int32)


def test_registry_names():
    """The names configs validate against (without TensorFlow) are the registered cells, and
    every cell declares how it is exported."""
    assert set(CELLS) == set(model_config.CELLS)
    for cell in CELLS.values():
        assert cell.gates and cell.equations
        assert set(cell.onnx_gates) == (set(cell.gates) if cell.onnx_operator else set())
    with pytest.raises(ValueError):
        SequenceEncoder("nope")


def test_a_cell_name_registers_once():
    from models.rnn.cells import register_cell

    with pytest.raises(ValueError, match="'gru' is already registered"):
        register_cell("gru")(type("AnotherGRU", (), {}))
    assert CELLS["gru"].__name__ != "AnotherGRU"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_and_output_size(bidirectional):
    encoder = SequenceEncoder("gru", units=6, num_layers=2, bidirectional=bidirectional)
    outputs, final = encoder(X, LENGTHS)
    dirs = 2 if bidirectional else 1
    assert encoder.output_size == 6 * dirs
    assert outputs.shape == (3, 7, 6 * dirs) and final.shape == (3, 6 * dirs)
    assert outputs.dtype == tf.float32


def test_config_round_trip():
    encoder = SequenceEncoder("layer_norm_lstm", units=5, num_layers=2, bidirectional=True,
                              input_keep_prob=0.9, update_keep_prob=0.8, forget_bias=0.5,
                              mask_per_example=True, seed=4)
    encoder(X, LENGTHS)
    clone = SequenceEncoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    clone(X, LENGTHS)
    clone.set_weights(encoder.get_weights())
    np.testing.assert_allclose(clone(X, LENGTHS)[0], encoder(X, LENGTHS)[0], atol=1e-6)


@pytest.mark.slow  # XLA compiles
@pytest.mark.parametrize("keep", [1.0, 0.8])
def test_xla_training_step(keep):
    """Without dropout XLA matches the graph; with it, XLA is deterministic per seed (its
    Philox stream differs from the CPU kernel's, so the masks differ from the graph's)."""
    encoder = SequenceEncoder("lstm", units=8, num_layers=2, bidirectional=True,
                              input_keep_prob=keep, state_keep_prob=keep, output_keep_prob=keep)
    encoder(X, LENGTHS)

    def loss_and_grads(x, lengths, seed):
        with tf.GradientTape() as tape:
            outputs, final = encoder(x, lengths, training=True, seed=seed)
            loss = tf.reduce_sum(final ** 2) + tf.reduce_mean(outputs)
        return loss, tape.gradient(loss, encoder.trainable_variables)

    seed = tf.constant([1, 2])
    graph = tf.function(loss_and_grads)(X, LENGTHS, seed)
    xla_step = tf.function(loss_and_grads, jit_compile=True)
    xla = xla_step(X, LENGTHS, seed)
    if keep == 1.0:
        np.testing.assert_allclose(xla[0], graph[0], rtol=1e-5)
        for a, b in zip(xla[1], graph[1]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    else:
        again, other = xla_step(X, LENGTHS, seed), xla_step(X, LENGTHS, tf.constant([3, 4]))
        np.testing.assert_array_equal(again[0], xla[0])
        assert abs(float(other[0]) - float(xla[0])) > 1e-4
        assert all(np.isfinite(g).all() for g in xla[1])


def test_loop_stops_at_longest_length():
    """Zero-length batch: no step runs, outputs and final are zero."""
    encoder = SequenceEncoder("lstm", units=4)
    outputs, final = encoder(X, np.zeros([3], np.int32))
    assert not np.any(outputs.numpy()) and not np.any(final.numpy())


def test_return_sequences_false_gives_same_final():
    encoder = SequenceEncoder("lstm", units=4, num_layers=2, bidirectional=True)
    outputs, final = encoder(X, LENGTHS, return_sequences=False)
    assert outputs is None
    np.testing.assert_allclose(final, encoder(X, LENGTHS)[1], atol=1e-7)


def test_checkpoint_restores_weights_and_mask_seed(tmp_path):
    """tf.train.Checkpoint sees every cell weight and the mask seed state: a restored encoder
    gives the same outputs and, training without a per-call seed, the same masks."""
    kwargs = dict(cell="lstm", units=4, num_layers=2, bidirectional=True, state_keep_prob=0.5)
    original = SequenceEncoder(seed=1, **kwargs)
    original(X, LENGTHS)
    original(X, LENGTHS, training=True)  # advance the seed state
    path = tf.train.Checkpoint(model=original).save(str(tmp_path / "ckpt"))
    restored = SequenceEncoder(seed=2, **kwargs)
    restored(X, LENGTHS)
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(X, LENGTHS)[1], original(X, LENGTHS)[1])
    np.testing.assert_array_equal(restored(X, LENGTHS, training=True)[1],
                                  original(X, LENGTHS, training=True)[1])


@pytest.mark.parametrize("variational", [True, False], ids=["per-sequence", "per-step"])
def test_per_example_seeds_give_each_example_its_masks_alone(variational):
    """seed [B, 2]: row b is what example b gives alone (cut to its length) with seed[b], so the
    masks do not depend on the batch, the position in it or the padding."""
    encoder = SequenceEncoder("layer_norm_lstm", units=5, num_layers=2, bidirectional=True,
                              input_keep_prob=0.7, state_keep_prob=0.6, output_keep_prob=0.8,
                              update_keep_prob=0.9, variational_recurrent=variational)
    seeds = tf.constant([[11, 0], [12, 0], [11, 1]], tf.int32)
    outputs, final = encoder(X, LENGTHS, training=True, seed=seeds)
    for b, length in enumerate(LENGTHS):
        alone_outputs, alone_final = encoder(X[b:b + 1, :length], LENGTHS[b:b + 1], training=True, seed=seeds[b])
        # Other batch sizes round matmuls differently (2e-6 seen through two layers and 1/keep
        # scaling); another mask would differ by ~0.1.
        np.testing.assert_allclose(final[b:b + 1], alone_final, rtol=0, atol=1e-5)
        np.testing.assert_allclose(outputs[b:b + 1, :length], alone_outputs, rtol=0, atol=1e-5)
    shared = encoder(X, LENGTHS, training=True, seed=seeds[0])[1]
    assert np.abs(shared.numpy() - final.numpy()).max() > 1e-3  # other seeds, other masks
