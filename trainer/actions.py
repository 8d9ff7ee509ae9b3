"""What happens between training chunks and at an evaluation: small parts over one run state.

The loop (`trainer.train`) decides *when*; each part here does *what* at that moment, in the
manner of Orbit's actions (tensorflow/models, `orbit/actions`):

  RunState       the counters a checkpoint carries besides model, optimizer and RNG
  evaluate       one pass over a finite dataset -> metrics
  BestKeeper     keeps the best weights by the early-stopping metric (Orbit's `NewBestMetric`)
  EarlyStopping  ends the run after `patience` evaluations without a better value
  Saver          the run's checkpoint saves (every N steps, every N seconds, at the end)
  check_finite   raises on the first NaN or Inf loss, before anything after it is saved
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from models import EvalMetrics
from trainer import checkpoints, distribution
from trainer.steps import model_keys


@dataclasses.dataclass
class RunState:
    """The run's counters (scalar tf.Variables), checkpointed with the model under these names.

    step: optimizer steps taken (also the data position, see `trainer.train`); best_value and
    best_step: the best evaluation so far (best_step -1 before the first); evals_without_improvement:
    evaluations since it; stopped_early: early stopping ended the run (a resume does not train on).
    """

    step: tf.Variable
    best_value: tf.Variable
    best_step: tf.Variable
    evals_without_improvement: tf.Variable
    stopped_early: tf.Variable

    @classmethod
    def create(cls, higher_is_better: bool) -> "RunState":
        return cls(step=tf.Variable(0, dtype=tf.int64, name="global_step"),
                   best_value=tf.Variable(-np.inf if higher_is_better else np.inf, dtype=tf.float64,
                                          name="best_value"),
                   best_step=tf.Variable(-1, dtype=tf.int64, name="best_step"),
                   evals_without_improvement=tf.Variable(0, dtype=tf.int64, name="evals_without_improvement"),
                   stopped_early=tf.Variable(False, name="stopped_early"))

    def checkpoint_items(self) -> Dict[str, tf.Variable]:
        """{checkpoint key: variable}: what `tf.train.Checkpoint(**items)` tracks."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def evaluate(eval_step, dataset, model_config, label_names):
    """One pass over a finite dataset; returns (metrics dict with "loss" and "examples", EvalMetrics)."""
    metrics = EvalMetrics(model_config.resolved_head, model_config.num_classes, label_names)
    loss_sum, weight_sum, examples = 0.0, 0.0, 0
    for batch in dataset:
        logits, weighted_sum, total_weight = eval_step(model_keys(batch))
        metrics.update(logits.numpy(), {k: v.numpy() for k, v in batch.items()})
        loss_sum += float(weighted_sum)
        weight_sum += float(total_weight)
        examples += int(batch["lengths"].shape[0])
    result = dict(metrics.result())
    result["loss"] = loss_sum / max(weight_sum, 1e-12)
    result["examples"] = examples
    return result, metrics


class BestKeeper:
    """Keeps the weights of the best evaluation by `metric` in their own checkpoint folder.

    An evaluation is better when it beats the best by more than `min_delta` (or is the first);
    the chief (`enabled`) then saves the model, the file name carrying the step.
    """

    def __init__(self, state: RunState, model, directory: str, metric: str, higher_is_better: bool,
                 min_delta: float, enabled: bool):
        self.state, self.metric = state, metric
        self.higher_is_better, self.min_delta, self.enabled = higher_is_better, min_delta, enabled
        self.checkpoint = tf.train.Checkpoint(model=model)
        self.manager = checkpoints.open_manager(self.checkpoint, directory, max_to_keep=1,
                                                step_counter=state.step)

    def __call__(self, result: Dict[str, float], step: int) -> bool:
        """Records evaluation `result` at `step`; returns whether it is the new best."""
        state, value = self.state, result[self.metric]
        best = float(state.best_value)
        delta = (value - best) if self.higher_is_better else (best - value)
        improved = delta > self.min_delta or int(state.best_step) < 0
        if improved:
            state.best_value.assign(value)
            state.best_step.assign(step)
            state.evals_without_improvement.assign(0)
            if self.enabled:
                self.manager.save(checkpoint_number=step)
        else:
            state.evals_without_improvement.assign_add(1)
        return improved

    def restore_best(self, evaluated: bool) -> Optional[str]:
        """Loads the best weights into the model; returns their checkpoint (None if none).
        A run that never evaluated keeps its last weights, saved here as the best known."""
        if not evaluated and not self.manager.latest_checkpoint:
            self.manager.save(checkpoint_number=int(self.state.step))
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).expect_partial()
        return path


class EarlyStopping:
    """After `patience` evaluations without a better one, marks the run stopped (0 = never)."""

    def __init__(self, state: RunState, patience: int):
        self.state, self.patience = state, patience

    def __call__(self) -> bool:
        """Called after the `BestKeeper`; returns whether the run stops here."""
        if self.patience and int(self.state.evals_without_improvement) >= self.patience:
            self.state.stopped_early.assign(True)
            return True
        return False


class Saver:
    """The run's checkpoint saves: every `every_steps` steps, when `every_secs` (0 = off) passed
    since the last save (agreed by every worker), and at the end; remembers the last one."""

    def __init__(self, manager: tf.train.CheckpointManager, every_steps: int, every_secs: float,
                 strategy):
        self.manager, self.every_steps, self.every_secs, self.strategy = manager, every_steps, every_secs, strategy
        self.last_time, self.last_step = time.time(), None

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)
        self.last_time, self.last_step = time.time(), step

    def save_if_due(self, step: int, final: bool) -> None:
        """After the chunk that ended at `step`; `final`: the run ends there."""
        # Agreed on every chunk by every worker (a collective when there are several), due or not.
        secs_due = self.every_secs > 0 and distribution.agree(
            self.strategy, time.time() - self.last_time >= self.every_secs)
        if step % self.every_steps == 0 or final or secs_due:
            self.save(step)


def check_finite(loop_stats, last_good: Optional[str]) -> None:
    """Raises FloatingPointError if a step of the chunk had a NaN or Inf loss (`loop_stats`:
    `trainer.steps.LoopStats`); called before any save, so such a step is never checkpointed."""
    bad_step = int(loop_stats.nonfinite_step.numpy())
    if bad_step >= 0:
        raise FloatingPointError(
            f"loss became NaN or Inf at step {bad_step}; nothing was saved after it, the last good "
            f"checkpoint is {last_good or '(none yet)'}")
