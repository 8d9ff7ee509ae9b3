"""Output heads: representation -> logits, plus the helpers serving code uses on logits.

Every head is a Keras layer called as `head(pooled, outputs, lengths)`:

  pooled:  float32 [B, H'], the pooled representation (sequence-level heads read this);
  outputs: float32 [B, T, H], per-step encoder outputs (the tagging head reads this);
  lengths: int32 [B], real steps per sequence.

and returns LOGITS, never probabilities:

  multiclass [B, C]  (softmax)      binary [B, 1]  (sigmoid, logit of class 1)
  multilabel [B, C]  (sigmoid)      tagging [B, T, C] (softmax per step; zeros past each length)

Pick one by name from `HEADS`. `prior_bias(head, class_counts, num_examples)` gives the initial
output bias that makes step 0 predict the training base rate.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from models.pooling import step_mask

# Keeps log-priors finite when a class never occurs in training.
_MIN_PRIOR = 1e-6
# The output kernel starts at a tenth of Glorot's scale, so at step 0 the (prior) bias dominates
# the logits and the model predicts close to the base rate, while the encoder still gets a
# gradient from the first step (a zero kernel would block it for one step).
KERNEL_INIT_SCALE = 0.01  # a variance scale: 1/10 of Glorot's standard deviation


class _DenseHead(keras.layers.Layer):
    """A dense layer to `logit_count` logits with an optional constant initial bias.

    Args:
      num_classes: C, the number of labels.
      bias_init: initial bias values (length = logits per position), or None for zeros.
    """

    def __init__(self, num_classes: int, bias_init: Optional[Sequence[float]] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.bias_init = None if bias_init is None else [float(b) for b in bias_init]
        if self.bias_init is not None and len(self.bias_init) != self.logit_count:
            raise ValueError(
                f"bias_init: expected {self.logit_count} values, got {len(self.bias_init)}")
        initializer = ("zeros" if self.bias_init is None
                       else keras.initializers.Constant(np.asarray(self.bias_init, np.float32)))
        kernel_initializer = keras.initializers.VarianceScaling(
            KERNEL_INIT_SCALE, mode="fan_avg", distribution="uniform")
        self.dense = keras.layers.Dense(self.logit_count, kernel_initializer=kernel_initializer,
                                        bias_initializer=initializer, name="logits",
                                        dtype=self.dtype_policy)

    # True when the head reads per-step `outputs` rather than `pooled`.
    reads_steps = False

    @property
    def logit_count(self) -> int:
        return self.num_classes

    def build(self, pooled_shape, outputs_shape=None, lengths_shape=None):
        width = outputs_shape[-1] if self.reads_steps else pooled_shape[-1]
        self.dense.build((None, int(width)))
        self.built = True

    def call(self, pooled, outputs, lengths):
        return self.dense(pooled)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "bias_init": self.bias_init}


class MulticlassHead(_DenseHead):
    """One label out of C per sequence: logits [B, C] for a softmax."""


class BinaryHead(_DenseHead):
    """Two classes, one logit [B, 1]: the log-odds of class 1."""

    @property
    def logit_count(self) -> int:
        return 1


class MultilabelHead(_DenseHead):
    """Any subset of C labels per sequence: logits [B, C], one sigmoid each."""


class TaggingHead(_DenseHead):
    """One label per step: logits [B, T, C], exactly zero past each length."""

    reads_steps = True

    def call(self, pooled, outputs, lengths):
        logits = self.dense(outputs)
        mask = tf.expand_dims(step_mask(lengths, tf.shape(outputs)[1]), -1)
        return tf.where(mask, logits, tf.zeros_like(logits))


HEADS = {
    "multiclass": MulticlassHead,
    "binary": BinaryHead,
    "multilabel": MultilabelHead,
    "tagging": TaggingHead,
}

# Heads whose logits go through a sigmoid (independent outputs); the rest use a softmax.
SIGMOID_HEADS = ("binary", "multilabel")


def make_head(head: str, num_classes: int, bias_init=None, **kwargs) -> keras.layers.Layer:
    """Builds the head registered as `head` (see `HEADS`)."""
    if head not in HEADS:
        raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")
    return HEADS[head](num_classes=num_classes, bias_init=bias_init, **kwargs)


def prior_bias(head: str, class_counts: Sequence[float], num_examples: int = 0) -> Optional[list]:
    """Initial output bias so that an all-zero representation predicts the training base rate.

    Args:
      head: a `HEADS` name.
      class_counts: length C; examples per class (per real step for tagging; per label being
        present for multilabel).
      num_examples: training examples; needed for multilabel (a label's absence is not counted).

    Returns:
      multiclass/tagging: log p_c (softmax(log p) = p); binary: [log(n1 / n0)];
      multilabel: log(p_c / (1 - p_c)) with p_c = n_c / num_examples.
      None when the counts are empty or, for multilabel, `num_examples` is unknown.
    """
    counts = np.asarray(class_counts, np.float64)
    if counts.size == 0 or counts.sum() <= 0:
        return None
    if head in ("multiclass", "tagging"):
        prior = np.maximum(counts / counts.sum(), _MIN_PRIOR)
        return [float(v) for v in np.log(prior)]
    if head == "binary":
        if counts.size != 2:
            raise ValueError(f"binary head: expected 2 class counts, got {counts.size}")
        p = np.clip(counts[1] / counts.sum(), _MIN_PRIOR, 1 - _MIN_PRIOR)
        return [float(np.log(p / (1 - p)))]
    if head == "multilabel":
        if num_examples <= 0:
            return None
        p = np.clip(counts / float(num_examples), _MIN_PRIOR, 1 - _MIN_PRIOR)
        return [float(v) for v in np.log(p / (1 - p))]
    raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")


def probabilities(logits: tf.Tensor, head: str) -> tf.Tensor:
    """Logits -> probabilities, same shape: sigmoid for binary/multilabel, softmax otherwise.

    Binary gives [B, 1], the probability of class 1.
    """
    if head in SIGMOID_HEADS:
        return tf.sigmoid(logits)
    if head in HEADS:
        return tf.nn.softmax(logits, axis=-1)
    raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")


def class_ids(logits: tf.Tensor, head: str) -> tf.Tensor:
    """Logits -> decisions.

    multiclass [B, C] -> int32 [B]; tagging [B, T, C] -> int32 [B, T] (argmax);
    binary [B, 1] -> int32 [B] (1 where logit > 0, i.e. p > 0.5);
    multilabel [B, C] -> int32 [B, C] multi-hot at p > 0.5.
    """
    if head == "binary":
        return tf.cast(logits[..., 0] > 0, tf.int32)
    if head == "multilabel":
        return tf.cast(logits > 0, tf.int32)
    if head in HEADS:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")
