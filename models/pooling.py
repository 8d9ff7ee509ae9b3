"""Poolings: per-step encoder outputs -> one vector per sequence, over real steps only.

Every pooling is a small Keras layer called as `pool(outputs, final, lengths)`:

  outputs: float32 [B, T, H], encoder outputs (values past a length are never read as data);
  final:   float32 [B, H], the encoder's final state of the top layer;
  lengths: int32 [B], real steps per sequence (the only truth about padding).
  returns: float32 [B, H].

Pick one by name from `POOLINGS`. The ops (where, reduce_sum/max, softmax, tanh, matmul) are
TFLite builtins; masked attention scores use a large negative number, not -inf, so a fully
masked row (length 0) stays finite.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Added to attention scores of padded steps: exp() of it underflows to exactly 0 in float32,
# while -inf would turn an all-padding row into NaN.
MASKED_SCORE = -1e9


def step_mask(lengths: tf.Tensor, max_time) -> tf.Tensor:
    """bool [B, T]: True at real steps. `lengths` int32 [B]; `max_time` scalar int."""
    return tf.sequence_mask(lengths, maxlen=max_time)


class _Pooling(keras.layers.Layer):
    """Base: `pool(outputs, final, lengths)`; weightless unless a subclass adds some."""

    def build(self, outputs_shape, final_shape=None, lengths_shape=None):
        self.built = True


class LastPooling(_Pooling):
    """The encoder's final state: the last real step forward (and the first, backward)."""

    def call(self, outputs, final, lengths):
        return final


class MeanPooling(_Pooling):
    """Mean of `outputs` over real steps; zeros for a length-0 sequence."""

    def call(self, outputs, final, lengths):
        mask = tf.expand_dims(step_mask(lengths, tf.shape(outputs)[1]), -1)
        total = tf.reduce_sum(tf.where(mask, outputs, tf.zeros_like(outputs)), axis=1)
        count = tf.expand_dims(tf.cast(tf.maximum(lengths, 1), outputs.dtype), -1)
        return total / count


class MaxPooling(_Pooling):
    """Elementwise max of `outputs` over real steps (padding never wins); zeros at length 0."""

    def call(self, outputs, final, lengths):
        mask = tf.expand_dims(step_mask(lengths, tf.shape(outputs)[1]), -1)
        lowest = tf.fill(tf.shape(outputs), tf.constant(outputs.dtype.min, outputs.dtype))
        pooled = tf.reduce_max(tf.where(mask, outputs, lowest), axis=1)
        has_steps = tf.expand_dims(lengths > 0, -1)
        return tf.where(has_steps, pooled, tf.zeros_like(pooled))


class AttentionPooling(_Pooling):
    """Additive attention (Bahdanau): score_t = v . tanh(W h_t + b), softmax over real steps.

    Args:
      attention_units: width of the tanh layer; defaults to the input width H.
    """

    def __init__(self, attention_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.attention_units = int(attention_units)

    def build(self, outputs_shape, final_shape=None, lengths_shape=None):
        width = int(outputs_shape[-1])
        units = self.attention_units or width
        self.projection = keras.layers.Dense(units, activation="tanh", name="projection",
                                             dtype=self.dtype_policy)
        self.projection.build((None, None, width))
        self.score = keras.layers.Dense(1, use_bias=False, name="score", dtype=self.dtype_policy)
        self.score.build((None, None, units))
        self.built = True

    def call(self, outputs, final, lengths):
        weights = self.attention_weights(outputs, lengths)
        return tf.reduce_sum(tf.expand_dims(weights, -1) * outputs, axis=1)

    def attention_weights(self, outputs, lengths):
        """float32 [B, T]: softmax weights, exactly 0 at padded steps, rows sum to 1 (or 0)."""
        scores = tf.squeeze(self.score(self.projection(outputs)), axis=-1)
        mask = step_mask(lengths, tf.shape(outputs)[1])
        scores = tf.where(mask, scores, tf.fill(tf.shape(scores), tf.constant(MASKED_SCORE, scores.dtype)))
        weights = tf.nn.softmax(scores, axis=-1)
        # A length-0 row would otherwise spread uniform weight over padding.
        return tf.where(mask, weights, tf.zeros_like(weights))

    def get_config(self):
        return {**super().get_config(), "attention_units": self.attention_units}


POOLINGS = {
    "last": LastPooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "attention": AttentionPooling,
}


def make_pooling(pooling: str, **kwargs) -> keras.layers.Layer:
    """Builds the pooling registered as `pooling` (see `POOLINGS`)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {tuple(POOLINGS)}, got {pooling!r}")
    return POOLINGS[pooling](**kwargs)
