"""TensorBoard summaries, throughput counting and the Vertex AI tuning report.

Summaries go to `<model_dir>/{train,eval}` or, on Vertex AI, `$AIP_TENSORBOARD_LOG_DIR`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf


class Throughput:
    """Sequences and real (unpadded) tokens per second, over a recent window and overall."""

    def __init__(self, window: int = 20):
        self._recent = collections.deque(maxlen=window)
        self._started = None
        self._sequences = 0
        self._tokens = 0
        self.padding_share = 0.0

    def add(self, lengths: np.ndarray) -> None:
        now = time.perf_counter()
        if self._started is None:
            self._started = now  # the first step includes tracing: measure from its end
        else:
            self._sequences += len(lengths)
            self._tokens += int(lengths.sum())
        self._recent.append((now, len(lengths), int(lengths.sum())))
        self.padding_share = 1.0 - float(lengths.sum()) / max(1, len(lengths) * int(lengths.max()))

    def _rate(self, column: int) -> float:
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1][0] - self._recent[0][0]
        return sum(item[column] for item in list(self._recent)[1:]) / max(span, 1e-9)

    def sequences_per_second(self) -> float:
        return self._rate(1)

    def tokens_per_second(self) -> float:
        return self._rate(2)

    def _overall(self, count: int) -> float:
        if self._started is None or not self._recent:
            return 0.0
        return count / max(self._recent[-1][0] - self._started, 1e-9)

    def overall_sequences_per_second(self) -> float:
        return self._overall(self._sequences)

    def overall_tokens_per_second(self) -> float:
        return self._overall(self._tokens)


class Writers:
    """The train and eval summary writers of one run."""

    def __init__(self, model_dir: str):
        root = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or model_dir
        self.train_writer = tf.summary.create_file_writer(tf.io.gfile.join(root, "train"))
        self.eval_writer = tf.summary.create_file_writer(tf.io.gfile.join(root, "eval"))

    def train(self, loss: float, grad_norm: float, learning_rate: float, throughput: Throughput,
              step: int) -> None:
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("grad_norm", grad_norm)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("sequences_per_second", throughput.sequences_per_second())
            tf.summary.scalar("tokens_per_second", throughput.tokens_per_second())
            tf.summary.scalar("padding_share", throughput.padding_share)

    def evaluation(self, result: Dict[str, float], confusion: np.ndarray, labels: Sequence[str],
                   step: int) -> None:
        with self.eval_writer.as_default(step=step):
            for key, value in result.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    tf.summary.scalar(key, value)
            if confusion is not None and confusion.size:
                tf.summary.image("confusion_matrix", confusion_image(confusion))
                tf.summary.text("labels", ", ".join(labels))

    def skipped_records(self, prepared, step: int) -> None:
        with self.train_writer.as_default(step=step):
            for split, info in prepared.splits.items():
                for reason, count in info.skipped.items():
                    tf.summary.scalar(f"skipped_records/{split}/{reason}", count)
                    logging.warning("%s: skipped %d bad records (%s)", split, count, reason)


def confusion_image(confusion: np.ndarray, cell_pixels: int = 16) -> np.ndarray:
    """Row-normalised confusion matrix as a [1, C*px, C*px, 1] float image (true rows, predicted columns)."""
    rows = confusion.astype(np.float64)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    image = np.kron(rows, np.ones((cell_pixels, cell_pixels)))
    return image[None, :, :, None].astype(np.float32)


def report_hypertune(metric: str, result: Dict[str, float], step: int) -> None:
    """Inside a Vertex AI tuning trial, reports the objective after each evaluation.

    Uses `cloudml-hypertune` when installed; Vertex sets CLOUD_ML_HP_METRIC_TAG for such trials.
    """
    if "CLOUD_ML_HP_METRIC_TAG" not in os.environ and "CLOUD_ML_HP_METRIC_FILE" not in os.environ:
        return
    try:
        import hypertune
    except ImportError:
        logging.warning("running in a tuning trial but cloudml-hypertune is not installed")
        return
    tag = os.environ.get("CLOUD_ML_HP_METRIC_TAG", metric)
    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=tag, metric_value=float(result[metric]), global_step=step)
