"""Random-convolution features (MiniROCKET, Dempster et al. 2021) as a length-aware layer.

A branch beside the recurrence for dense series: fixed dilated convolutions, each output
summarised by the proportion of positive values (PPV) over the sequence's real steps. With
a linear head on top this is MiniROCKET, the strongest cheap baseline of time-series
classification, and it is what a trainable network lacks on small sets (two examples a class
and 2,000 steps: nothing to learn kernels from).

  kernels:   the 84 length-9 kernels with weight -1 at six taps and 2 at three;
             for D > 1 features each kernel reads a fixed random subset of the channels.
  dilations: powers of 2 from 1 up to (reference_length - 1) / 8 (at most `MAX_DILATIONS`).
  biases:    per (dilation, kernel), `biases_per_kernel` quantiles of that kernel's outputs on
             one training sequence (low-discrepancy quantile levels, as MiniROCKET), fitted by
             `adapt` from a sample of the training split; stored as (non-trainable) weights.
  features:  PPV(dilation, kernel, bias) = mean over real steps t = 0, s, 2s, ... of
             [conv(x)_t > bias] (s = 1 up to `MAX_POSITIONS` steps at the median length, then
             a power of 2 that keeps the count about that many: the cost is features x steps),
             then standardised with the sample's feature mean and std and scaled by
             sqrt(REFERENCE_WIDTH / F).

Padding never changes a result: steps past a length are zero before the convolution (what
zero padding puts past the end of a lone sequence), each output step reads a fixed window
(4 * dilation zeros of padding on each side, whatever the batch's T) and the PPV counts real
steps only. Every op (PAD, STRIDED_SLICE, CONCATENATION, BATCH_MATMUL, GREATER, SELECT,
SUM) is a TFLite builtin with a dynamic batch and time. Nothing here trains: gradients stop at these features.
"""

from __future__ import annotations

import itertools
import math
from typing import Tuple

import keras
import numpy as np
import tensorflow as tf

from models.pooling import step_mask

KERNEL_LENGTH = 9
MAX_DILATIONS = 32
# Steps of a median-length sequence the PPV is counted over; longer sequences are counted at
# every s-th step (s a power of 2). Cost is features x counted steps: 4,000 features over all
# 2,000 steps of PigCVP took 1 s a batch of 32 on 2 cores; on train-split folds counting every
# 8th step (256 of 2,000) scored as every step did.
MAX_POSITIONS = 256
# The golden-ratio sequence MiniROCKET draws its quantile levels from.
_GOLDEN = (math.sqrt(5.0) + 1.0) / 2.0
# A feature whose sample std is below this is scaled by 1 (it is constant on the sample).
_MIN_FEATURE_STD = 1e-3
# The standardised features are scaled so that together they have the variance of this many
# unit features: thousands of them beside a 128-wide pooled recurrence would otherwise take
# Adam's per-weight steps thousands of times over (on train-split folds, a linear head on 4,032
# unscaled features at the trainer's learning rate lost up to 20 points).
REFERENCE_WIDTH = 64


def kernel_weights() -> np.ndarray:
    """float32 [9, 84]: MiniROCKET's kernels, -1 everywhere and 2 at three of the nine taps."""
    combos = list(itertools.combinations(range(KERNEL_LENGTH), 3))
    weights = -np.ones((KERNEL_LENGTH, len(combos)), np.float32)
    for column, taps in enumerate(combos):
        weights[list(taps), column] = 2.0
    return weights


NUM_KERNELS = kernel_weights().shape[1]  # 84


def dilations_for(reference_length: int) -> Tuple[int, ...]:
    """Powers of 2 from 1 while the dilated kernel (8 * d + 1 steps) fits the length."""
    longest = max(1, (int(reference_length) - 1) // (KERNEL_LENGTH - 1))
    count = min(MAX_DILATIONS, int(math.floor(math.log2(longest))) + 1)
    return tuple(2 ** i for i in range(count))


def position_stride_for(reference_length: int) -> int:
    """s: the PPV counts every s-th step, a power of 2 so that at most `MAX_POSITIONS` steps
    of a median-length sequence are counted (1 for sequences up to that long)."""
    ratio = max(1.0, int(reference_length) / MAX_POSITIONS)
    return 2 ** int(math.ceil(math.log2(ratio) - 1e-9))


def biases_per_kernel(num_features: int, num_dilations: int) -> int:
    """How many biases (features) each (dilation, kernel) pair gets for about `num_features`."""
    return max(1, round(num_features / (NUM_KERNELS * num_dilations)))


def channel_masks(feature_dim: int, num_dilations: int, seed: int) -> np.ndarray:
    """float32 [num_dilations, D, 84]: which channels each kernel reads (all of them for D = 1;
    otherwise a random subset of 1 .. min(D, 9) channels, MiniROCKET's multivariate rule)."""
    masks = np.ones((num_dilations, feature_dim, NUM_KERNELS), np.float32)
    if feature_dim == 1:
        return masks
    rng = np.random.default_rng(seed)
    masks[:] = 0.0
    most = min(feature_dim, KERNEL_LENGTH)
    for d in range(num_dilations):
        for k in range(NUM_KERNELS):
            # 2 ** U(0, log2(most + 1)) channels, as MiniROCKET draws them.
            count = int(2 ** rng.uniform(0, math.log2(most + 1)))
            chosen = rng.choice(feature_dim, size=max(1, min(count, most)), replace=False)
            masks[d, chosen, k] = 1.0
    return masks


class RandomConvFeatures(keras.layers.Layer):
    """MiniROCKET-style PPV features of dense sequences, standardised.

    Args:
      feature_dim: D, channels of the input steps.
      reference_length: typical training length (the median); sets the dilations.
      num_features: about how many features (rounded to 84 * dilations * biases per kernel).
      seed: draws the channel subsets and the sample sequences the biases come from.

    Call arguments:
      steps: float [B, T, D], exact zeros past each length are not required (they are zeroed).
      lengths: int32 [B], real steps, each in [0, T].

    Returns:
      float32 [B, F] standardised, scaled PPV features (F = `output_size`); a zero-length
      sequence gets PPV 0 everywhere.
    """

    def __init__(self, feature_dim: int, reference_length: int, num_features: int = 4000,
                 seed: int = 0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if feature_dim < 1 or reference_length < 1 or num_features < 1:
            raise ValueError(f"RandomConvFeatures needs feature_dim, reference_length and "
                             f"num_features >= 1, got {feature_dim}, {reference_length}, "
                             f"{num_features}")
        self.feature_dim = int(feature_dim)
        self.reference_length = int(reference_length)
        self.num_features = int(num_features)
        self.seed = int(seed)
        self.dilations = dilations_for(self.reference_length)
        self.position_stride = position_stride_for(self.reference_length)
        self.per_kernel = biases_per_kernel(self.num_features, len(self.dilations))
        masks = channel_masks(self.feature_dim, len(self.dilations), self.seed)
        # [n_dil, 9, D, 84]: the kernels with each one's channel subset applied.
        self._kernel_values = kernel_weights()[None, :, None, :] * masks[:, None, :, :]

    @property
    def output_size(self) -> int:
        """F = dilations x 84 kernels x biases per kernel."""
        return len(self.dilations) * NUM_KERNELS * self.per_kernel

    def build(self, steps_shape=None, lengths_shape=None):
        n = len(self.dilations)
        kernel_values = self._kernel_values
        self.kernels = self.add_weight(
            name="kernels", shape=kernel_values.shape, trainable=False,
            initializer=lambda shape, dtype=None: tf.constant(kernel_values, tf.float32))
        self.biases = self.add_weight(name="biases", shape=(n, NUM_KERNELS, self.per_kernel),
                                      trainable=False, initializer="zeros")
        self.feature_mean = self.add_weight(name="feature_mean", shape=(self.output_size,),
                                            trainable=False, initializer="zeros")
        self.feature_std = self.add_weight(name="feature_std", shape=(self.output_size,),
                                           trainable=False, initializer="ones")
        self.built = True

    def _convolve(self, steps, index: int):
        """float32 [B, T', 84]: kernel outputs at dilation `self.dilations[index]` at steps
        0, s, 2s, ... (s = `position_stride`, T' = ceil(T / s)); `steps` [B, T, D] with exact
        zeros past each length. Nine dilated shifts and one matmul (a dilated CONV_2D with one
        input channel is several times slower on CPUs)."""
        dilation, stride = self.dilations[index], self.position_stride
        pad = (KERNEL_LENGTH - 1) // 2 * dilation
        time_steps = tf.shape(steps)[1]
        positions = (time_steps + stride - 1) // stride
        padded = tf.pad(steps, [[0, 0], [pad, pad + stride], [0, 0]])
        # Shift k reads x[t + (k - 4) * dilation] for t = 0, s, 2s, ...
        shifts = [padded[:, k * dilation:k * dilation + positions * stride:stride]
                  for k in range(KERNEL_LENGTH)]
        windows = tf.concat(shifts, axis=-1)  # [B, T', 9 * D], tap-major
        kernel = tf.reshape(self.kernels[index], [KERNEL_LENGTH * self.feature_dim, NUM_KERNELS])
        return tf.matmul(windows, kernel)

    def _ppv(self, steps, lengths, biases):
        """float32 [B, F] unstandardised PPV, biases [n_dil, 84, per_kernel]."""
        steps = tf.cast(steps, tf.float32)
        time_steps = tf.shape(steps)[1]
        steps = tf.where(tf.expand_dims(step_mask(lengths, time_steps), -1), steps,
                         tf.zeros_like(steps))
        stride = self.position_stride
        positions = (time_steps + stride - 1) // stride
        # Real positions among 0, s, 2s, ...: ceil(length / s) of them.
        real = (lengths + stride - 1) // stride
        count = tf.cast(tf.reshape(tf.maximum(real, 1), [-1, 1, 1]), tf.float32)
        mask4 = tf.reshape(step_mask(real, positions), [-1, positions, 1, 1])
        features = []
        for index in range(len(self.dilations)):
            out = self._convolve(steps, index)  # [B, T, 84]
            positive = tf.logical_and(tf.expand_dims(out, -1) > biases[index], mask4)
            ppv = tf.reduce_sum(tf.cast(positive, tf.float32), axis=1) / count  # [B, 84, nb]
            features.append(tf.reshape(ppv, [-1, NUM_KERNELS * self.per_kernel]))
        return tf.concat(features, axis=-1)

    def call(self, steps, lengths):
        features = self._ppv(steps, lengths, tf.stop_gradient(self.biases))
        scale = math.sqrt(REFERENCE_WIDTH / self.output_size)
        return tf.stop_gradient((features - self.feature_mean) / self.feature_std * scale)

    def adapt(self, steps, lengths) -> None:
        """Fits the biases and the feature standardisation on a sample of training sequences.

        Args:
          steps: float32 [N, T, D] as `call` receives them (normalised), N >= 1.
          lengths: int32 [N].
        Deterministic given the sample and `seed`.
        """
        if not self.built:
            self.build()
        steps = tf.convert_to_tensor(steps, tf.float32)
        lengths = np.asarray(lengths, np.int32)
        rng = np.random.default_rng(self.seed + 1)
        count = NUM_KERNELS * self.per_kernel
        biases = np.zeros((len(self.dilations), NUM_KERNELS, self.per_kernel), np.float32)
        candidates = np.flatnonzero(lengths > 0)
        if candidates.size == 0:
            raise ValueError("RandomConvFeatures.adapt: every sample sequence is empty")
        mask = step_mask(tf.constant(lengths), tf.shape(steps)[1])
        masked = tf.where(tf.expand_dims(mask, -1), steps, tf.zeros_like(steps))
        for index in range(len(self.dilations)):
            example = int(rng.choice(candidates))
            out = self._convolve(masked[example:example + 1], index)[0].numpy()  # [T, 84]
            out = out[:lengths[example]]
            levels = ((np.arange(1, count + 1) * _GOLDEN) % 1.0).reshape(
                NUM_KERNELS, self.per_kernel)
            for kernel in range(NUM_KERNELS):
                biases[index, kernel] = np.quantile(out[:, kernel], levels[kernel])
        self.biases.assign(biases)
        features = self._ppv(steps, tf.constant(lengths), tf.constant(biases)).numpy()
        std = features.std(axis=0)
        self.feature_mean.assign(features.mean(axis=0))
        self.feature_std.assign(np.where(std < _MIN_FEATURE_STD, 1.0, std).astype(np.float32))

    def compute_output_spec(self, steps, lengths):
        return keras.KerasTensor((steps.shape[0], self.output_size))

    def get_config(self):
        return {**super().get_config(), "feature_dim": self.feature_dim,
                "reference_length": self.reference_length, "num_features": self.num_features,
                "seed": self.seed}
