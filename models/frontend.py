"""Input front ends that run before the recurrence: per-sequence normalisation and strided
convolutions, both length-aware.

Long sequences (spectra, vital signs, DNA) are slow for a recurrence and hard for it to
remember. The strong models of time-series classification put convolutions in front
(LSTM-FCN, InceptionTime); here a stack of 1-D convolutions shortens the sequence by its
stride before the encoder reads it, and carries the lengths through:

  layer i:  x <- ReLU(LayerNorm(Conv1D_i(x)))          stride s_i, kernel k
            lengths <- ceil(lengths / s_i)

Padding never changes a result, so each convolution is written to read exactly what it would
read on the sequence alone:
  * steps past a length are set to 0 before every convolution, which is what zero "same"
    padding would put past the end of a lone sequence;
  * the left padding is fixed at (k - 1) // 2 and output step j reads inputs
    j * s - (k - 1) // 2 .. j * s + k // 2, whatever the batch's padded length T (Keras'
    "same" padding would shift its window with T when s > 1);
  * normalisation is per step over channels (LayerNorm), never a statistic over time or over
    the batch, so padded steps cannot move it;
  * outputs past the new length are set to 0.

Every op (PAD, CONV_2D, STRIDED_SLICE, MEAN, SELECT) is a TFLite builtin with a dynamic batch
and time.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from models.pooling import step_mask

# Added to the per-sequence variance: a constant series becomes all zeros, not NaN.
SEQUENCE_NORM_EPSILON = 1e-6


def strided_lengths(lengths: tf.Tensor, stride: int) -> tf.Tensor:
    """int32 [B]: ceil(lengths / stride), the real steps left after a stride-`stride` layer."""
    return (lengths + (stride - 1)) // stride


def sequence_normalize(steps: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """Z-normalises every sequence over its own real steps, per feature.

    Args:
      steps: float32 [B, T, D], exact zeros past each length.
      lengths: int32 [B].
    Returns:
      float32 [B, T, D]: (x - mean) / sqrt(var + eps) at real steps, 0 past each length; mean
      and var are over the sequence's real steps only.
    """
    mask = tf.expand_dims(step_mask(lengths, tf.shape(steps)[1]), -1)
    count = tf.cast(tf.reshape(tf.maximum(lengths, 1), [-1, 1, 1]), steps.dtype)
    zeros = tf.zeros_like(steps)
    mean = tf.reduce_sum(tf.where(mask, steps, zeros), axis=1, keepdims=True) / count
    centred = tf.where(mask, steps - mean, zeros)
    variance = tf.reduce_sum(centred * centred, axis=1, keepdims=True) / count
    return centred * tf.math.rsqrt(variance + SEQUENCE_NORM_EPSILON)


class ConvFrontEnd(keras.layers.Layer):
    """A stack of length-aware 1-D convolutions that shortens sequences by their strides.

    Args:
      filters: int, output channels of every layer.
      kernel_size: int k >= 1, steps each output reads.
      strides: sequence of ints >= 1, one per layer (its length is the number of layers).

    Call arguments:
      steps: float [B, T, D], any values past each length (they are zeroed first).
      lengths: int32 [B], real steps, each in [0, T].

    Returns:
      (steps float [B, ceil(T / S), filters] with exact zeros past each new length,
       lengths int32 [B] = ceil(lengths / S)), S = the product of `strides`.
    """

    def __init__(self, filters: int = 64, kernel_size: int = 7, strides: Sequence[int] = (1,),
                 **kwargs):
        super().__init__(**kwargs)
        if filters < 1 or kernel_size < 1 or not strides or min(strides) < 1:
            raise ValueError(f"ConvFrontEnd needs filters >= 1, kernel_size >= 1 and strides >= 1, "
                             f"got {filters}, {kernel_size}, {tuple(strides)}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.convs, self.norms = [], []
        for index, stride in enumerate(self.strides):
            conv = keras.layers.Conv1D(self.filters, self.kernel_size, strides=stride,
                                       padding="valid", name=f"conv{index}",
                                       dtype=self.dtype_policy)
            # Per-step normalisation over channels: no statistic ever spans padded steps.
            norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm{index}",
                                                   dtype=self.dtype_policy)
            # Attributes as well as lists: Keras 3 hides layers kept in lists from
            # tf.train.Checkpoint.
            setattr(self, f"conv{index}", conv)
            setattr(self, f"norm{index}", norm)
            self.convs.append(conv)
            self.norms.append(norm)

    @property
    def total_stride(self) -> int:
        """S: how many input steps one output step stands for."""
        total = 1
        for stride in self.strides:
            total *= stride
        return total

    def build(self, steps_shape, lengths_shape=None):
        width = int(steps_shape[-1])
        for conv, norm in zip(self.convs, self.norms):
            conv.build((None, None, width))
            norm.build((None, None, self.filters))
            width = self.filters
        self.built = True

    def call(self, steps, lengths):
        left = (self.kernel_size - 1) // 2
        for conv, norm, stride in zip(self.convs, self.norms, self.strides):
            time_steps = tf.shape(steps)[1]
            steps = tf.where(tf.expand_dims(step_mask(lengths, time_steps), -1), steps,
                             tf.zeros_like(steps))
            # Enough right padding that "valid" yields at least ceil(T / stride) outputs; the
            # slice then keeps exactly that many, so the output length depends on T alone.
            right = self.kernel_size - 1 - left + stride
            padded = tf.pad(steps, [[0, 0], [left, right], [0, 0]])
            out_steps = strided_lengths(time_steps, stride)
            steps = conv(padded)[:, :out_steps]
            steps = tf.nn.relu(norm(steps))
            lengths = strided_lengths(lengths, stride)
        mask = tf.expand_dims(step_mask(lengths, tf.shape(steps)[1]), -1)
        return tf.where(mask, steps, tf.zeros_like(steps)), lengths

    def compute_output_spec(self, steps, lengths):
        return (keras.KerasTensor((steps.shape[0], None, self.filters)),
                keras.KerasTensor(lengths.shape, dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": list(self.strides)}

