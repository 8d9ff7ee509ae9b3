"""TensorBoard summaries, throughput counting and the Vertex AI tuning report.

Summaries go to `<model_dir>/{train,eval}` or, on Vertex AI, `$AIP_TENSORBOARD_LOG_DIR`. The
root folder itself holds the run's hyperparameters (TensorBoard's HParams plugin, so runs under
one folder compare side by side) and its final metrics (`final/test_accuracy`, ...).
"""

from __future__ import annotations

import collections
import logging
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from trainer import environment


class Throughput:
    """Sequences and real (unpadded) tokens per second of training, recent and overall.

    Fed once per compiled chunk of steps with the chunk's counts and its wall time; evaluation
    and checkpointing happen between chunks and are not counted. The first chunk of a run
    includes tracing (and XLA compilation) and is left out of the overall rates.
    """

    def __init__(self, window: int = 5):
        self._recent = collections.deque(maxlen=window)
        self._chunks = 0
        self._sequences = self._tokens = 0
        self._seconds = 0.0
        self.padding_share = 0.0

    def add(self, sequences: int, tokens: int, seconds: float, padding_share: float) -> None:
        self._chunks += 1
        self.padding_share = padding_share
        if self._chunks > 1 or not self._recent:
            self._recent.append((seconds, sequences, tokens))
        if self._chunks == 2:
            self._recent.popleft()  # drop the tracing chunk as soon as a real one exists
        if self._chunks > 1:
            self._sequences += sequences
            self._tokens += tokens
            self._seconds += seconds

    def _rate(self, column: int) -> float:
        span = sum(item[0] for item in self._recent)
        return sum(item[column] for item in self._recent) / span if span > 0 else 0.0

    def sequences_per_second(self) -> float:
        return self._rate(1)

    def tokens_per_second(self) -> float:
        return self._rate(2)

    def overall_sequences_per_second(self) -> float:
        return self._sequences / self._seconds if self._seconds > 0 else self.sequences_per_second()

    def overall_tokens_per_second(self) -> float:
        return self._tokens / self._seconds if self._seconds > 0 else self.tokens_per_second()


# Config fields that name this run's own folders: they differ between any two runs by definition.
_NOT_HPARAMS = ("model_dir", "export_dir")


def summary_root(model_dir: str) -> str:
    return environment.tensorboard_dir() or model_dir


def hparam_values(config) -> Dict[str, object]:
    """{field: value} of every flag field of a (resolved) `trainer.config.Config`, as the
    HParams plugin takes them (bool, int, float, str)."""
    from trainer.config import flag_fields

    values = {}
    for section, field in flag_fields():
        value = getattr(getattr(config, section), field.name)
        if field.name not in _NOT_HPARAMS and isinstance(value, (bool, int, float, str)):
            values[field.name] = value
    return values


class Writers:
    """The train and eval summary writers of one run, and the run's own (hyperparameters)."""

    def __init__(self, model_dir: str, enabled: bool = True):
        """enabled=False (a non-chief worker): every summary goes nowhere."""
        root = summary_root(model_dir)
        self.trial_id = model_dir.rstrip("/").rsplit("/", 1)[-1]
        if enabled:
            self.train_writer = tf.summary.create_file_writer(tf.io.gfile.join(root, "train"))
            self.eval_writer = tf.summary.create_file_writer(tf.io.gfile.join(root, "eval"))
            self.run_writer = tf.summary.create_file_writer(root)
        else:
            self.train_writer = self.eval_writer = self.run_writer = tf.summary.create_noop_writer()

    def hparams(self, config) -> None:
        """Logs the run's hyperparameters (a resumed run logs the same ones again)."""
        from tensorboard.plugins.hparams import api as hp

        with self.run_writer.as_default():
            hp.hparams(hparam_values(config), trial_id=self.trial_id)
        self.run_writer.flush()

    def train(self, stats: Dict[str, float], learning_rate: float, throughput: Throughput,
              step: int) -> None:
        """stats: `LoopStats.read_and_reset()` of the chunk that ended at `step`."""
        with self.train_writer.as_default(step=step):
            tf.summary.scalar("loss", stats["loss"])
            tf.summary.scalar("grad_norm", stats["grad_norm"])
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("sequences_per_second", throughput.sequences_per_second())
            tf.summary.scalar("tokens_per_second", throughput.tokens_per_second())
            tf.summary.scalar("padding_share", throughput.padding_share)
            for key in ("loss_scale", "overflow_skipped_steps"):  # float16 mixed precision only
                if key in stats:
                    tf.summary.scalar(key, stats[key])

    def evaluation(self, result: Dict[str, float], confusion: np.ndarray, labels: Sequence[str],
                   step: int) -> None:
        with self.eval_writer.as_default(step=step):
            for key, value in result.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    tf.summary.scalar(key, value)
            if confusion is not None and confusion.size:
                tf.summary.image("confusion_matrix", confusion_image(confusion))
                tf.summary.text("labels", ", ".join(labels))

    def flush(self) -> None:
        self.train_writer.flush()
        self.eval_writer.flush()
        self.run_writer.flush()

    def skipped_records(self, prepared, step: int) -> None:
        with self.train_writer.as_default(step=step):
            for split, info in prepared.splits.items():
                tf.summary.scalar(f"skipped_records/{split}", sum(info.skipped.values()))
                for reason, count in info.skipped.items():
                    tf.summary.scalar(f"skipped_records/{split}/{reason}", count)
                    logging.warning("%s: skipped %d bad records (%s)", split, count, reason)


def write_final_metrics(model_dir: str, final: Dict[str, object]) -> None:
    """The final eval and test numbers (`final/test_accuracy`, ...) and the run's throughput,
    in the run's own folder: the metrics the HParams dashboard sets beside the hyperparameters."""
    values = {"final/sequences_per_second": final.get("sequences_per_second"),
              "final/tokens_per_second": final.get("tokens_per_second")}
    for split in ("eval", "test"):
        for key, value in dict(final.get(split) or {}).items():
            if "/" not in key:  # the per-class entries stay in metrics.json
                values[f"final/{split}_{key}"] = value
    writer = tf.summary.create_file_writer(summary_root(model_dir))
    with writer.as_default(step=int(final["steps"])):
        for tag, value in values.items():
            if isinstance(value, (int, float)) and np.isfinite(value):
                tf.summary.scalar(tag, value)
    writer.close()


def confusion_image(confusion: np.ndarray, cell_pixels: int = 16) -> np.ndarray:
    """Row-normalised confusion matrix as a [1, C*px, C*px, 1] float image (true rows, predicted columns)."""
    rows = confusion.astype(np.float64)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    image = np.kron(rows, np.ones((cell_pixels, cell_pixels)))
    return image[None, :, :, None].astype(np.float32)


class TuningReporter:
    """Inside a Vertex AI tuning trial, reports the objective after each evaluation.

    Uses `cloudml-hypertune` (Vertex sets CLOUD_ML_HP_METRIC_TAG for such trials; the library
    writes JSON lines to CLOUD_ML_HP_METRIC_FILE). One `HyperTune` object per run: the library
    rewrites its file from the reports that object holds, so a fresh one per report would keep
    only the last.
    """

    def __init__(self, metric: str, enabled: bool = True):
        self._metric = environment.hp_metric_tag(metric)
        self._source = metric
        self._hypertune = None
        wanted = enabled and environment.in_tuning_trial()
        if wanted:
            try:
                import hypertune
            except ImportError:
                logging.warning("running in a tuning trial but cloudml-hypertune is not installed")
                return
            self._hypertune = hypertune.HyperTune()

    def report(self, result: Dict[str, float], step: int) -> None:
        if self._hypertune is not None:
            self._hypertune.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=self._metric, metric_value=float(result[self._source]),
                global_step=step)
