"""How long a run trains and how often things happen in it: pure arithmetic, no TensorFlow.

`training_steps` (the run's optimizer steps), `eval_period` (steps between evaluations),
`patience_for` (early-stopping patience), `use_xla` (the `jit_compile=auto` rule) and
`next_stop` (where the compiled chunk in flight must end). The data-size rules they apply are
the `AUTO_*` constants of `trainer.config`, where their measurements are written down.
"""

from __future__ import annotations

import logging
import math

from trainer.config import (AUTO_EPOCH_SEQUENCES, AUTO_MAX_EPOCHS, AUTO_MIN_EPOCHS, AUTO_MIN_PATIENCE,
                            AUTO_MIN_STEPS, AUTO_PATIENCE_FRACTION, XLA_AUTO_MIN_TOKENS,
                            XLA_AUTO_REFERENCE_SHAPES)

# Evaluations (and so checkpoints) a default run makes at most: each costs a pass over the
# eval split and a checkpoint write, which on tiny sets cost more than the epoch itself.
MAX_AUTO_EVALS = 150


def training_steps(tc, num_train: int, steps_per_epoch: int) -> int:
    """Optimizer steps of the run: `max_steps`, else `num_epochs` epochs, else (both 0) the
    data-size rule: ceil(AUTO_EPOCH_SEQUENCES / N) epochs clipped to [AUTO_MIN_EPOCHS,
    AUTO_MAX_EPOCHS], and at least AUTO_MIN_STEPS steps (see TrainConfig.num_epochs)."""
    if tc.max_steps:
        return tc.max_steps
    if tc.num_epochs:
        return tc.num_epochs * steps_per_epoch
    epochs = min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_EPOCH_SEQUENCES / max(num_train, 1))))
    steps = max(epochs * steps_per_epoch, AUTO_MIN_STEPS)
    logging.info("num_epochs=0: %d steps (%.1f epochs) for %d training sequences (about %d "
                 "sequences in all, %d to %d epochs, at least %d steps)", steps,
                 steps / steps_per_epoch, num_train, AUTO_EPOCH_SEQUENCES, AUTO_MIN_EPOCHS,
                 AUTO_MAX_EPOCHS, AUTO_MIN_STEPS)
    return steps


def patience_for(tc, evaluations: int) -> int:
    """Evaluations without improvement before stopping: `early_stopping_patience`, or for -1
    (auto) ceil(AUTO_PATIENCE_FRACTION x the run's planned evaluations), at least
    AUTO_MIN_PATIENCE; 0 = never stop."""
    if tc.early_stopping_patience >= 0:
        return tc.early_stopping_patience
    patience = max(AUTO_MIN_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * evaluations))
    logging.info("early_stopping_patience=auto: stop after %d evaluations without a better hold-out "
                 "%s (%d planned; a fifth, at least %d)", patience, tc.early_stopping_metric,
                 evaluations, AUTO_MIN_PATIENCE)
    return patience


def eval_period(total_steps: int, steps_per_epoch: int) -> int:
    """Steps between evaluations when `eval_every_steps` is 0: every epoch, but whole epochs
    of at least total_steps / MAX_AUTO_EVALS steps, so a run over a tiny set (one step an
    epoch, 1,200 epochs) evaluates and checkpoints about MAX_AUTO_EVALS times, not 1,200."""
    epochs = max(1, math.ceil(total_steps / (MAX_AUTO_EVALS * steps_per_epoch)))
    return epochs * steps_per_epoch


def use_xla(setting: str, training_tokens: int, compiled_shapes: int = XLA_AUTO_REFERENCE_SHAPES) -> bool:
    """Resolves `jit_compile` ("on", "off", "auto") for a run that reads this many real steps
    and would compile the step for `compiled_shapes` time lengths (each compile costs seconds)."""
    if setting != "auto":
        return setting == "on"
    threshold = XLA_AUTO_MIN_TOKENS * max(1, compiled_shapes) // XLA_AUTO_REFERENCE_SHAPES
    chosen = training_tokens >= threshold
    logging.info("jit_compile=auto: XLA %s for about %d training tokens (on from %d for %d "
                 "compiled time lengths)", "on" if chosen else "off", training_tokens, threshold,
                 compiled_shapes)
    return chosen


def next_stop(current: int, total: int, periods) -> int:
    """The first step after `current` at which something is due (a multiple of a period, or the end)."""
    return min([total] + [(current // p + 1) * p for p in periods if p > 0])
