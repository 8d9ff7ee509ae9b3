"""`HashedNGramBag`: a fastText-style bag of hashed token n-grams, beside the recurrence.

Token sequences that a bag of words (or of k-mers) classifies well are the ones a recurrence
learns slowly: on the development suite a TF-IDF + linear model beat the recurrent defaults on
text, and k-mer counts beat them by 40 points on DNA (bench/real_data_results.md). This layer
gives the head that bag directly: every n-gram of orders 1..N that lies wholly inside a
sequence's real steps is hashed into one of `buckets` rows of a trained embedding table, and the
sequence's vector is the mean of its n-grams' rows (Joulin et al., 2017, "Bag of Tricks for
Efficient Text Classification"), layer-normalised over its `dim` features. Why the norm: a mean
over thousands of n-grams differs between classes by a few thousandths while the recurrence's
outputs are of order 1; with Adam's bounded steps the head then learned the bag too slowly to
use it (train-split CV on the DNA set, bench/real_data_results.md).

Hashing (int32 throughout, so every op is a TFLite builtin): the n-gram of ids w_0..w_{n-1}
hashes to h_n = (h_{n-1} * PRIME + w_{n-1} + 1) mod buckets with h_0 = 1 (each order extends
the one below it), so unigrams map to distinct rows while the vocabulary is below `buckets`, and
no intermediate value passes 2**31 (`buckets <= MAX_BUCKETS`). Padding never changes a result: ids past a length are replaced
before hashing, and only n-grams ending at or before the last real step are counted.

Imports: keras, tensorflow, `models.pooling` only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.pooling import step_mask

# Multiplier of the rolling hash; with buckets <= MAX_BUCKETS, h * PRIME + id + 1 stays in int32
# for any id below 2**26.
PRIME = 7919
MAX_BUCKETS = 2 ** 18


class HashedNGramBag(keras.layers.Layer):
    """Mean embedding of a sequence's hashed n-grams of orders 1..`orders`.

    Args:
      orders: longest n-gram (>= 1); every order from 1 up is counted.
      buckets: rows of the embedding table (2 <= buckets <= MAX_BUCKETS).
      dim: width of each row, the output width.

    Call arguments:
      token_ids: int32 [B, T], any values past each length.
      lengths: int32 [B], real steps per sequence (clipped to T).

    Output: float32 [B, dim], LayerNorm(mean row) (epsilon 1e-5, `gamma`, `beta`); `beta` for an
      empty sequence.
    """

    def __init__(self, orders: int, buckets: int, dim: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if orders < 1 or not 2 <= buckets <= MAX_BUCKETS or dim < 1:
            raise ValueError(f"HashedNGramBag: expected orders >= 1, 2 <= buckets <= {MAX_BUCKETS}, "
                             f"dim >= 1; got {orders}, {buckets}, {dim}")
        self.orders, self.buckets, self.dim = int(orders), int(buckets), int(dim)

    @property
    def output_size(self) -> int:
        return self.dim

    def build(self, input_shape=None):
        # Keras' Embedding initialiser: uniform in (-0.05, 0.05).
        self.table = self.add_weight(name="table", shape=(self.buckets, self.dim),
                                     initializer="uniform", trainable=True)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm", dtype="float32")
        self.norm.build((None, self.dim))
        self.built = True

    def hashes(self, token_ids, lengths):
        """[(hashes int32 [B, T], valid bool [B, T])] per order 1..orders: the row of the
        n-gram starting at each step, and whether it lies wholly inside the real steps."""
        time = tf.shape(token_ids)[1]
        lengths = tf.minimum(tf.cast(lengths, tf.int32), time)
        ids = tf.where(step_mask(lengths, time), tf.cast(token_ids, tf.int32), 0)
        positions = tf.expand_dims(tf.range(time), 0)
        # Zeros past T (those n-grams are invalid anyway), so every shift below keeps T steps
        # even when T is shorter than the longest order.
        padded = tf.pad(ids, [[0, 0], [0, self.orders - 1]])
        result, hashed = [], tf.ones_like(ids)
        for n in range(1, self.orders + 1):
            shifted = tf.slice(padded, [0, n - 1], [-1, time])  # ids[t + n - 1] at every t
            hashed = tf.math.floormod(hashed * PRIME + shifted + 1, self.buckets)
            valid = positions + n <= tf.expand_dims(lengths, 1)
            result.append((hashed, valid))
        return result

    def call(self, token_ids, lengths, training=False):
        """LayerNorm of the mean row; `training` (Python bool) picks how the mean is computed
        (`_mean_by_counts` when True, `_mean_by_gather` otherwise): the same numbers (to float
        rounding), at the cost each use wants."""
        hashes = self.hashes(token_ids, lengths)
        mean = self._mean_by_counts(hashes) if training else self._mean_by_gather(hashes)
        return self.norm(mean)

    def _mean_by_gather(self, hashes):
        """Gathers each n-gram's row: cheap forward for a few sequences (serving, TFLite, one
        sequence of any length), and only builtin ops."""
        total = None
        count = None
        for hashed, valid in hashes:
            rows = tf.gather(self.table, hashed)  # [B, T, dim], rows of in-range hashes only
            # A multiply is safe here (the rows are table rows, never garbage); TFLite has no
            # strided slice that adds an axis to a bool tensor.
            weight = tf.cast(valid, tf.float32)
            part = tf.reduce_sum(rows * tf.expand_dims(weight, -1), axis=1)
            number = tf.reduce_sum(weight, axis=1, keepdims=True)
            total = part if total is None else total + part
            count = number if count is None else count + number
        return total / tf.maximum(count, 1.0)

    def _mean_by_counts(self, hashes):
        """Counts each sequence's n-grams per row (float32 [B, buckets], exact integers), then
        one matmul with the table. The gradient is then counts^T @ upstream, a dense matmul,
        where the gather's gradient scatters B x T x orders rows of `dim` into the table (under
        XLA on CPU that scatter was half of a DNA training step: 58 against 117 sequences/s
        without the bag). Memory: B x buckets floats (32 MB at batch 32 and 2**18 rows)."""
        batch = tf.shape(hashes[0][0])[0]
        offsets = tf.expand_dims(tf.range(batch) * self.buckets, 1)  # [B, 1]; B x buckets < 2**31
        rows = tf.concat([tf.reshape(hashed + offsets, [-1]) for hashed, _ in hashes], axis=0)
        weights = tf.concat([tf.reshape(tf.cast(valid, tf.float32), [-1]) for _, valid in hashes],
                            axis=0)
        counts = tf.reshape(tf.math.unsorted_segment_sum(weights, rows, batch * self.buckets),
                            [batch, self.buckets])
        total = tf.matmul(counts, self.table)
        return total / tf.maximum(tf.reduce_sum(counts, axis=1, keepdims=True), 1.0)

    def get_config(self):
        return {**super().get_config(), "orders": self.orders, "buckets": self.buckets, "dim": self.dim}
