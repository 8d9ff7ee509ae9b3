"""The hashed n-gram bag (models/ngram_bag.py): its hash is the documented rolling hash, it
averages exactly the n-grams inside each sequence, padding never reaches it, and in a
classifier it trains, restores and stays off where it does not belong."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import build_model
from models.ngram_bag import MAX_BUCKETS, PRIME, HashedNGramBag
from models_testlib import tiny_config


def _layer_norm(x, gamma=1.0, beta=0.0):
    return (x - x.mean()) / np.sqrt(x.var() + 1e-5) * gamma + beta


def _reference(table, ids, length, orders):
    """LayerNorm of the mean of table rows over every n-gram (1 <= n <= orders) wholly inside
    ids[:length] (gamma 1, beta 0: a fresh layer's)."""
    buckets = table.shape[0]
    rows = []
    for n in range(1, orders + 1):
        for start in range(0, length - n + 1):
            h = 1
            for token in ids[start:start + n]:
                h = (h * PRIME + int(token) + 1) % buckets
            rows.append(table[h])
    return _layer_norm(np.mean(rows, axis=0) if rows else np.zeros(table.shape[1], np.float32))


def _layer(orders=3, buckets=97, dim=5):
    layer = HashedNGramBag(orders, buckets, dim)
    layer.build()
    layer.table.assign(np.random.default_rng(0).normal(size=(buckets, dim)).astype(np.float32))
    return layer


# Both ways the layer computes its mean: gathering rows (serving) and counting rows (training).
BOTH_PATHS = pytest.mark.parametrize("training", [False, True], ids=["gather", "counts"])


@BOTH_PATHS
def test_the_mean_over_real_ngrams_matches_a_plain_python_reference(training):
    layer = _layer()
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 40, size=(4, 9)).astype(np.int32)
    lengths = np.array([9, 5, 1, 0], np.int32)
    out = layer(tf.constant(ids), tf.constant(lengths), training=training).numpy()
    table = layer.table.numpy()
    for row, (sequence, length) in enumerate(zip(ids, lengths)):
        np.testing.assert_allclose(out[row], _reference(table, sequence, length, 3), atol=1e-5)
    np.testing.assert_array_equal(out[3], 0.0)  # an empty sequence: beta
    # A batch shorter than the longest order (DNA sets hold sequences of 5 tokens; orders go to 6).
    short = _layer(orders=6)
    out = short(tf.constant(ids[:, :2]), tf.constant([2, 1, 1, 0]), training=training).numpy()
    for row, length in enumerate([2, 1, 1, 0]):
        np.testing.assert_allclose(out[row], _reference(short.table.numpy(), ids[row], length, 6), atol=1e-5)


def test_unigrams_get_distinct_rows_and_orders_are_counted_once():
    layer = _layer(orders=2, buckets=MAX_BUCKETS)
    ids = tf.constant([[1, 2, 3, 60000, 5]], tf.int32)
    (uni, uni_valid), (bi, bi_valid) = layer.hashes(ids, tf.constant([4]))
    assert len(set(uni.numpy()[0, :4].tolist())) == 4
    np.testing.assert_array_equal(uni_valid.numpy()[0], [True, True, True, True, False])
    np.testing.assert_array_equal(bi_valid.numpy()[0], [True, True, True, False, False])
    assert (uni.numpy() >= 0).all() and (bi.numpy() < MAX_BUCKETS).all()  # no int32 overflow


@BOTH_PATHS
def test_padding_garbage_and_batch_company_change_nothing(training):
    layer = _layer()
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 40, size=(3, 7)).astype(np.int32)
    lengths = np.array([7, 4, 2], np.int32)
    out = layer(tf.constant(ids), tf.constant(lengths), training=training).numpy()
    garbage = np.concatenate([ids, rng.integers(-5, 10 ** 6, size=(3, 6)).astype(np.int32)], axis=1)
    for row, length in enumerate(lengths):
        garbage[row, length:] = rng.integers(-5, 10 ** 6, size=garbage.shape[1] - length)
    np.testing.assert_allclose(layer(tf.constant(garbage), tf.constant(lengths), training=training).numpy(),
                               out, atol=1e-6)
    for row, length in enumerate(lengths):
        alone = layer(tf.constant(ids[row:row + 1, :length]), tf.constant([length]),
                      training=training).numpy()
        np.testing.assert_allclose(alone[0], out[row], atol=1e-6)


@pytest.mark.slow  # XLA compiles
def test_training_and_serving_paths_agree_in_value_and_gradient_under_xla():
    """Training counts rows and multiplies (a dense gradient), serving gathers: a model trained
    one way and served the other must see the same function, and its table the same gradient."""
    layer = _layer(orders=4, buckets=257, dim=6)
    rng = np.random.default_rng(3)
    ids = tf.constant(rng.integers(1, 6, size=(5, 40)).astype(np.int32))
    lengths = tf.constant([40, 33, 7, 2, 0], tf.int32)
    upstream = tf.constant(rng.normal(size=(5, 6)).astype(np.float32))

    def value_and_grad(training):
        @tf.function(jit_compile=True)
        def run():
            with tf.GradientTape() as tape:
                out = layer(ids, lengths, training=training)
                loss = tf.reduce_sum(out * upstream)
            return out, tf.convert_to_tensor(tape.gradient(loss, layer.table))
        return [t.numpy() for t in run()]

    (served, served_grad), (trained, trained_grad) = value_and_grad(False), value_and_grad(True)
    np.testing.assert_allclose(trained, served, atol=1e-5)
    np.testing.assert_allclose(trained_grad, served_grad, atol=1e-5)
    assert np.abs(trained_grad).max() > 1e-3  # the table does get a gradient


def test_bad_sizes_are_refused():
    for orders, buckets, dim in [(0, 16, 4), (2, MAX_BUCKETS + 1, 4), (2, 16, 0)]:
        with pytest.raises(ValueError, match="HashedNGramBag"):
            HashedNGramBag(orders, buckets, dim)


def test_a_token_classifier_trains_its_bag_and_restores_it(tmp_path):
    keras.utils.set_random_seed(3)
    config = tiny_config("multiclass", tokens=True, ngram_orders=3, ngram_buckets=64, ngram_dim=4)
    model = build_model(config)
    assert model.ngram_bag is not None and model.embed(
        {"token_ids": tf.ones([2, 5], tf.int32), "lengths": tf.constant([5, 3])}).shape[-1] == 4 + 4
    batch = {"token_ids": tf.constant([[1, 2, 3, 4], [4, 3, 0, 0]]), "lengths": tf.constant([4, 2])}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(batch))
    (grad,) = [g for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))
               if "ngram_bag" in v.path and "table" in v.path]
    assert np.count_nonzero(np.any(tf.convert_to_tensor(grad).numpy() != 0, axis=1)) > 0
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    twin = build_model(config)
    tf.train.Checkpoint(model=twin).read(path).assert_consumed()
    np.testing.assert_array_equal(twin.ngram_bag.table.numpy(), model.ngram_bag.table.numpy())
    np.testing.assert_allclose(twin(batch).numpy(), model(batch).numpy(), atol=1e-6)


def test_dense_and_tagging_models_get_no_bag():
    assert build_model(tiny_config("multiclass", ngram_orders=3)).ngram_bag is None
    assert build_model(tiny_config("tagging", tokens=True, ngram_orders=3)).ngram_bag is None
