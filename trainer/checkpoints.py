"""Restoring: the newest readable checkpoint of this run, or a warm start from another run's."""

from __future__ import annotations

import logging
import re
from typing import List, Optional

import tensorflow as tf

from models import build_model


def restore_newest_readable(checkpoint: tf.train.Checkpoint, manager) -> Optional[str]:
    """Restores the newest checkpoint of `manager` that can be read; returns its path or None.

    A checkpoint that cannot be read (a truncated or corrupted data file, a missing index) is
    skipped with a warning and the one before it is tried.
    """
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            logging.warning("checkpoint %s cannot be read (%s); trying the one before", path,
                            str(error).splitlines()[0][:300])
    return None


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
