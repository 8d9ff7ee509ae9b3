"""`EvalMetrics`: accumulates logits over an evaluation pass and reports plain floats.

Called eagerly after a compiled eval step: `update(logits, batch)` converts to numpy and keeps
what the metrics need (a confusion matrix, plus scores for AUC and calibration), `result()`
returns `{name: float}` ready for `tf.summary.scalar`, and `reset()` starts over.

Metrics per head (all unweighted except the loss, which respects "weight"):
  every head:   loss, accuracy (tagging: over real steps; multilabel: exact match),
                precision/<label>, recall/<label>, f1/<label>, macro_f1
  multiclass, tagging, binary: ece (`tfp.stats.expected_calibration_error`, top-label)
  binary:       auc (exact: Mann-Whitney rank statistic, ties counted half)
  multilabel:   micro_f1, exact_match (= accuracy), everything at probability > 0.5
A precision/recall with an empty denominator is reported as 0.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from models.heads import HEADS
from models.losses import loss_terms


def _numpy(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _safe_divide(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC: P(score of a positive > score of a negative), ties count 1/2.

    Args: scores float [N]; labels {0, 1} [N]. Returns NaN when one class is absent.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # Average ranks over runs of equal scores.
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    """Top-label ECE of softmax(logits) [N, C] against int labels [N], `num_bins` equal bins."""
    if len(labels) == 0:
        return float("nan")
    import tensorflow_probability as tfp  # Heavy (seconds); only evaluation needs it.
    return float(tfp.stats.expected_calibration_error(
        num_bins, logits=tf.constant(logits, tf.float32),
        labels_true=tf.constant(labels, tf.int32)))


class EvalMetrics:
    """Evaluation accumulator for one head.

    Args:
      head: a `HEADS` name (the resolved head, never "auto").
      num_classes: C (2 for binary).
      label_names: C strings used in metric names; defaults to "0", "1", ...
      num_bins: calibration bins for the ECE.
    """

    def __init__(self, head: str, num_classes: int, label_names: Optional[Sequence[str]] = None,
                 num_bins: int = 15):
        if head not in HEADS:
            raise ValueError(f"head: expected one of {tuple(HEADS)}, got {head!r}")
        if head == "binary" and num_classes != 2:
            raise ValueError(f"binary head: expected num_classes=2, got {num_classes}")
        self.head = head
        self.num_classes = int(num_classes)
        self.label_names = tuple(label_names) if label_names else tuple(
            str(i) for i in range(self.num_classes))
        if len(self.label_names) != self.num_classes:
            raise ValueError(f"label_names: expected {self.num_classes} names, "
                             f"got {len(self.label_names)}")
        self.num_bins = int(num_bins)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self._confusion = (np.zeros((c, 2, 2), np.int64) if self.head == "multilabel"
                           else np.zeros((c, c), np.int64))
        self._loss_sum = 0.0
        self._loss_weight = 0.0
        self._exact = 0
        self._examples = 0
        self._scores = []   # binary: logits; multiclass/tagging: [n, C] logits
        self._targets = []  # matching int labels

    def update(self, logits, batch: Mapping[str, object],
               loss: Optional[Tuple[object, object]] = None) -> None:
        """Adds one batch.

        Args:
          logits: the model's logits for `batch` (shape per head, see `models.heads`).
          batch: the batch dict with the target key, "lengths" and optional "weight".
          loss: (weighted_sum, total_weight) from the eval step; computed here from `logits`
            (no smoothing, no class weights) when None.
        """
        if loss is None:
            loss = loss_terms(self.head, logits, batch)
        self._loss_sum += float(_numpy(loss[0]))
        self._loss_weight += float(_numpy(loss[1]))
        logits = _numpy(logits).astype(np.float32)
        if self.head == "multilabel":
            self._update_multilabel(logits, _numpy(batch["labels"]))
            return
        if self.head == "tagging":
            lengths = _numpy(batch["lengths"]).astype(np.int64)
            mask = np.arange(logits.shape[1])[None, :] < lengths[:, None]
            logits = logits[mask]
            targets = _numpy(batch["tags"]).astype(np.int64)[mask]
        else:
            targets = _numpy(batch["label"]).astype(np.int64).reshape(-1)
        if self.head == "binary":
            scores = logits.reshape(-1)
            predicted = (scores > 0).astype(np.int64)
        else:
            scores = logits
            predicted = np.argmax(logits, axis=-1)
        np.add.at(self._confusion, (targets, predicted), 1)
        self._scores.append(scores)
        self._targets.append(targets)

    def _update_multilabel(self, logits: np.ndarray, targets: np.ndarray) -> None:
        predicted = logits > 0
        truth = targets > 0.5
        for t in (0, 1):
            for p in (0, 1):
                self._confusion[:, t, p] += ((truth == t) & (predicted == p)).sum(axis=0)
        self._exact += int(np.all(predicted == truth, axis=-1).sum())
        self._examples += len(logits)

    def confusion_matrix(self) -> np.ndarray:
        """int64 [C, C] (rows: true class, columns: predicted); multilabel: [C, 2, 2] per label."""
        return self._confusion.copy()

    def reliability(self) -> Optional[Dict[str, list]]:
        """Top-label reliability bins, the ones `ece` is computed from (`num_bins` equal widths of
        the predicted class's probability over [0, 1]): {"count": [B] ints, "confidence": [B]
        mean probability, "accuracy": [B] share correct}; empty bins hold 0. None for the
        multilabel head or before any update."""
        if self.head == "multilabel" or not self._targets:
            return None
        scores = np.concatenate(self._scores).astype(np.float64)
        targets = np.concatenate(self._targets)
        if self.head == "binary":
            positive = 1.0 / (1.0 + np.exp(-scores))
            predicted = (scores > 0).astype(np.int64)
            confidence = np.where(predicted == 1, positive, 1.0 - positive)
        else:
            shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
            predicted = probabilities.argmax(axis=-1)
            confidence = probabilities.max(axis=-1)
        bins = np.clip((confidence * self.num_bins).astype(np.int64), 0, self.num_bins - 1)
        count = np.bincount(bins, minlength=self.num_bins)
        correct = np.bincount(bins, weights=(predicted == targets).astype(np.float64), minlength=self.num_bins)
        total = np.bincount(bins, weights=confidence, minlength=self.num_bins)
        return {"count": count.tolist(), "confidence": _safe_divide(total, count).tolist(),
                "accuracy": _safe_divide(correct, count).tolist()}

    def result(self) -> Dict[str, float]:
        """{metric name: float} for everything seen since the last `reset`."""
        out = {"loss": float(_safe_divide(self._loss_sum, self._loss_weight))}
        if self.head == "multilabel":
            tp = self._confusion[:, 1, 1]
            fp = self._confusion[:, 0, 1]
            fn = self._confusion[:, 1, 0]
            out["accuracy"] = out["exact_match"] = float(_safe_divide(self._exact, self._examples))
            micro_p = _safe_divide(tp.sum(), tp.sum() + fp.sum())
            micro_r = _safe_divide(tp.sum(), tp.sum() + fn.sum())
            out["micro_f1"] = float(_safe_divide(2 * micro_p * micro_r, micro_p + micro_r))
        else:
            cm = self._confusion
            tp = np.diag(cm)
            fp = cm.sum(axis=0) - tp
            fn = cm.sum(axis=1) - tp
            out["accuracy"] = float(_safe_divide(tp.sum(), cm.sum()))
        precision = _safe_divide(tp, tp + fp)
        recall = _safe_divide(tp, tp + fn)
        f1 = _safe_divide(2 * precision * recall, precision + recall)
        for name, p, r, f in zip(self.label_names, precision, recall, f1):
            out[f"precision/{name}"] = float(p)
            out[f"recall/{name}"] = float(r)
            out[f"f1/{name}"] = float(f)
        # A class that is neither in the targets nor predicted says nothing about the model (a
        # small eval split often lacks one); averaging its 0 in would punish a perfect model.
        seen = (tp + fp + fn) > 0
        out["macro_f1"] = float(np.mean(f1[seen])) if seen.any() else 0.0
        if self.head != "multilabel" and self._targets:
            scores = np.concatenate(self._scores)
            targets = np.concatenate(self._targets)
            if self.head == "binary":
                out["auc"] = binary_auc(scores, targets)
                # A sigmoid logit z is the softmax of [0, z]: same ECE machinery.
                scores = np.stack([np.zeros_like(scores), scores], axis=-1)
            out["ece"] = expected_calibration_error(scores, targets, self.num_bins)
        return out
