"""Losses from logits, returned as (weighted sum, total weight) so any caller can normalise.

The loss is a weighted mean: every example (every real step, for tagging) contributes
`weight * loss`, and the mean divides by the sum of those weights. Returning the two sums
separately lets the trainer add them over replicas of a distribution strategy, or over the
micro-batches of gradient accumulation, and divide once: the result does not depend on how the
global batch was split.

Batch dict contract (other keys are ignored):
  "label":   int32 [B]        class id (multiclass; binary: 0 or 1)
  "labels":  float32 [B, C]   multi-hot (multilabel)
  "tags":    int32 [B, T]     class id per step (tagging; values past a length are ignored)
  "lengths": int32 [B]        real steps (tagging needs it)
  "weight":  float32 [B]      example weights (optional, default 1)

Weights per element: example weight x class weight of its target class (multiclass, binary,
tagging), both in the numerator and in the denominator. For multilabel, `class_weights` are
positive-class weights (`pos_weight` of `tf.nn.weighted_cross_entropy_with_logits`): they scale
the loss of a present label only and are not in the denominator; a multilabel example's loss is
the mean over its C labels.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from models.heads import HEADS
from models.pooling import step_mask


def _example_weights(batch: Mapping[str, tf.Tensor], batch_size) -> tf.Tensor:
    """float32 [B]: batch["weight"], or ones."""
    if "weight" in batch:
        return tf.cast(tf.reshape(batch["weight"], [-1]), tf.float32)
    return tf.ones([batch_size], tf.float32)


def _softmax_losses(logits, class_ids, num_classes, label_smoothing):
    """Per-position softmax cross entropy; `logits` [..., C], `class_ids` int [...]."""
    if label_smoothing:
        targets = tf.one_hot(class_ids, num_classes, dtype=logits.dtype)
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
        return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=class_ids, logits=logits)


def _smooth_binary(targets, label_smoothing):
    """Sigmoid targets pulled towards 0.5, as Keras' binary cross-entropy does."""
    if label_smoothing:
        return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return targets


def _as_weights(class_weights) -> tf.Tensor:
    """float32 [C] from a list, numpy array or tensor."""
    return tf.cast(tf.convert_to_tensor(class_weights), tf.float32)


def _gather_class_weights(class_weights, class_ids):
    if class_weights is None:
        return None
    return tf.gather(_as_weights(class_weights), class_ids)


def loss_terms(head: str, logits: tf.Tensor, batch: Mapping[str, tf.Tensor], *,
               label_smoothing: float = 0.0,
               class_weights: Optional[Sequence[float]] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """The loss as a weighted sum and the total weight it should be divided by.

    Args:
      head: a `HEADS` name; decides which target key is read (see the module docstring).
      logits: float32, multiclass [B, C], binary [B, 1], multilabel [B, C], tagging [B, T, C].
      batch: dict with the target, "lengths" (tagging) and optionally "weight".
      label_smoothing: in [0, 1); softmax targets become (1 - s) * one_hot + s / C, sigmoid
        targets (1 - s) * y + s / 2.
      class_weights: length C (2 for binary), or None; a list, numpy array or float32 tensor.
        See the module docstring.

    Returns:
      (weighted_sum, total_weight): float32 scalars; the loss is their ratio.
    """
    logits = tf.convert_to_tensor(logits)
    logits = tf.cast(logits, tf.float32)
    batch_size = tf.shape(logits)[0]
    weights = _example_weights(batch, batch_size)
    if head == "multiclass":
        label = tf.cast(tf.reshape(batch["label"], [-1]), tf.int32)
        losses = _softmax_losses(logits, label, logits.shape[-1], label_smoothing)
        per_class = _gather_class_weights(class_weights, label)
    elif head == "binary":
        label = tf.cast(tf.reshape(batch["label"], [-1]), tf.int32)
        targets = _smooth_binary(tf.cast(label, tf.float32), label_smoothing)
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits[:, 0])
        per_class = _gather_class_weights(class_weights, label)
    elif head == "multilabel":
        targets = _smooth_binary(tf.cast(batch["labels"], tf.float32), label_smoothing)
        if class_weights is None:
            elementwise = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
        else:
            elementwise = tf.nn.weighted_cross_entropy_with_logits(
                labels=targets, logits=logits,
                pos_weight=_as_weights(class_weights))
        losses = tf.reduce_mean(elementwise, axis=-1)
        per_class = None
    elif head == "tagging":
        mask = step_mask(tf.cast(batch["lengths"], tf.int32), tf.shape(logits)[1])
        # Padded tags may hold anything; an out-of-range id would fail the lookup.
        tags = tf.where(mask, tf.cast(batch["tags"], tf.int32), tf.zeros_like(mask, tf.int32))
        losses = _softmax_losses(logits, tags, logits.shape[-1], label_smoothing)
        weights = tf.expand_dims(weights, -1) * tf.cast(mask, tf.float32)
        per_class = _gather_class_weights(class_weights, tags)
        # Zero, not 0 * loss: a padded step's loss is computed on garbage and must not leak NaN.
        losses = tf.where(mask, losses, tf.zeros_like(losses))
    else:
        raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")
    if per_class is not None:
        weights = weights * per_class
    return tf.reduce_sum(weights * losses), tf.reduce_sum(weights)


def compute_loss(head: str, logits: tf.Tensor, batch: Mapping[str, tf.Tensor], *,
                 label_smoothing: float = 0.0,
                 class_weights: Optional[Sequence[float]] = None) -> tf.Tensor:
    """float32 scalar: weighted mean loss of this batch (0 when the total weight is 0)."""
    weighted_sum, total_weight = loss_terms(
        head, logits, batch, label_smoothing=label_smoothing, class_weights=class_weights)
    return tf.math.divide_no_nan(weighted_sum, total_weight)


def class_weights_from_counts(counts: Sequence[float], mode: str, *, head: str = "multiclass",
                              num_examples: int = 0) -> Optional[np.ndarray]:
    """Class weights for `loss_terms` from training counts.

    Args:
      counts: length C; examples per class (per real step for tagging; examples where the label
        is present, for multilabel).
      mode: "none" -> None; "balanced" -> total / (C * n_c) (as scikit-learn), so every class
        carries the same total weight; for multilabel, positive weights (N - n_c) / n_c.
      head: a `HEADS` name.
      num_examples: N, training examples; required for multilabel "balanced".

    Returns:
      float32 [C] or None. A class never seen gets the weight of a class seen once.
    """
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"class_weighting: expected 'none' or 'balanced', got {mode!r}")
    counts = np.maximum(np.asarray(counts, np.float64), 1.0)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts: expected a non-empty 1-D sequence, got shape {counts.shape}")
    if head == "multilabel":
        if num_examples <= 0:
            raise ValueError("multilabel balanced weights need num_examples > 0, got "
                             f"{num_examples}")
        return ((num_examples - np.minimum(counts, num_examples)) / counts).astype(np.float32)
    return (counts.sum() / (counts.size * counts)).astype(np.float32)
