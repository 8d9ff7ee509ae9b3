"""Restoring: the newest readable checkpoint of this run, or a warm start from another run's."""

from __future__ import annotations

import logging
import re
from typing import Callable, List, Optional

import tensorflow as tf

from models import build_model

# Errors of reading a damaged checkpoint. IndexError: a data file cut short ("Read less bytes
# than requested", raised by the Python reader, not as an OpError).
_UNREADABLE = (tf.errors.OpError, AssertionError, ValueError, IndexError)
# Errors that say nothing about the checkpoint and may pass: falling back past every checkpoint
# would restart from step 0 and let `max_to_keep` delete the good ones, so they stop the run.
_TRANSIENT = (tf.errors.PermissionDeniedError, tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
              tf.errors.ResourceExhaustedError, tf.errors.CancelledError, tf.errors.AbortedError)


def checkpoint_step(path: str) -> int:
    """The step in a checkpoint prefix the trainer wrote (`.../ckpt-<step>`)."""
    return int(path.rsplit("-", 1)[1])


def _try_restore(checkpoint: tf.train.Checkpoint, path: str) -> bool:
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
        return True
    except _TRANSIENT:
        raise
    except _UNREADABLE as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        logging.warning("checkpoint %s cannot be read (%s: %s); trying the one before", path,
                        type(error).__name__, reason)
        return False


def restore_newest_readable(checkpoint: tf.train.Checkpoint, manager, at_most: float = float("inf"),
                            ) -> Optional[str]:
    """Restores the newest checkpoint of `manager` (at step <= `at_most`) that can be read;
    returns its path or None.

    A checkpoint that cannot be read (a truncated or corrupted data file, a missing index) is
    skipped with a warning and the one before it is tried.
    """
    for path in reversed(manager.checkpoints):
        if checkpoint_step(path) <= at_most and _try_restore(checkpoint, path):
            return path
    return None


def restore_agreed(checkpoint: tf.train.Checkpoint, manager, min_over_workers: Callable[[int], int],
                   ) -> Optional[str]:
    """Multi-worker resume: every worker restores its own checkpoint of one common step.

    Each worker keeps its own checkpoints (its own data iterator). If one worker's newest cannot
    be read, the others must step back with it, or they would resume at different steps and
    train out of step. So each restores its newest readable checkpoint, the workers agree on the
    smallest of those steps, and whoever is ahead restores that step instead; if a worker cannot
    read it either, all try the next older step. Returns this worker's path, or None when the
    workers share no readable step (all start afresh).

    min_over_workers: int -> the minimum of that int over all workers (a collective: every
      worker must call it the same number of times).
    """
    bound = float("inf")
    while True:
        path = restore_newest_readable(checkpoint, manager, at_most=bound)
        agreed = min_over_workers(checkpoint_step(path) if path else -1)
        if agreed < 0:
            if path:
                logging.warning("the workers share no readable checkpoint; all start from step 0")
            return None
        if checkpoint_step(path) != agreed:
            logging.warning("another worker cannot resume past step %d: resuming there too", agreed)
            exact = [p for p in manager.checkpoints if checkpoint_step(p) == agreed]
            path = exact[0] if exact and _try_restore(checkpoint, exact[0]) else None
        if min_over_workers(1 if path else 0) == 1:
            return path
        bound = agreed - 1


def _variable_name(variable) -> str:
    """A variable's path without the model's own (process-dependent) name."""
    return variable.path.split("/", 1)[-1]


def _find_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix, a checkpoint folder or a run's model dir."""
    for folder in (path, tf.io.gfile.join(path, "best"), tf.io.gfile.join(path, "checkpoints")):
        if tf.io.gfile.isdir(folder):
            latest = tf.train.latest_checkpoint(folder)
            if latest:
                return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(f"warm_start_from={path!r}: no checkpoint there (expected a checkpoint "
                            "prefix, a folder with one, or a model dir with best/ or checkpoints/)")


def _source_model_config(prefix: str, fallback):
    """The ModelConfig of the run that wrote `prefix` (its config.json), else `fallback`."""
    from trainer.config import CONFIG_FILE, Config  # the trainer's file format, read back

    folder = prefix.rsplit("/", 1)[0]
    for candidate in (folder, folder.rsplit("/", 1)[0]):
        if tf.io.gfile.exists(tf.io.gfile.join(candidate, CONFIG_FILE)):
            return Config.load(candidate).model
    return fallback


def warm_start(model, path: str, pattern: str, model_config) -> List[str]:
    """Copies the variables matching `pattern` from another run's checkpoint into `model`.

    The source model is rebuilt from the source run's `config.json` (so a different head, say,
    restores cleanly) and only variables whose names match `pattern` (`re.search`) are copied.
    Returns the copied names. Raises ValueError when nothing matches or shapes differ.
    """
    prefix = _find_checkpoint(path)
    source = build_model(_source_model_config(prefix, model_config))
    tf.train.Checkpoint(model=source).read(prefix).expect_partial()
    by_name = {_variable_name(v): v for v in source.variables}
    regex = re.compile(pattern)
    copied, mismatched = [], []
    for variable in model.variables:
        name = _variable_name(variable)
        if not regex.search(name) or name not in by_name:
            continue
        if tuple(by_name[name].shape) != tuple(variable.shape):
            mismatched.append(f"{name} {tuple(by_name[name].shape)} -> {tuple(variable.shape)}")
            continue
        variable.assign(by_name[name])
        copied.append(name)
    if mismatched:
        raise ValueError(f"warm start from {prefix}: shapes differ for {mismatched}; narrow "
                         "--warm-start-vars to the variables that fit")
    if not copied:
        raise ValueError(f"warm start from {prefix}: no variable matches {pattern!r}; names are "
                         f"{sorted(by_name)}")
    logging.info("warm-started %d variables from %s", len(copied), prefix)
    return copied
