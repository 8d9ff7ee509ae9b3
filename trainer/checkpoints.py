"""Checkpoint folders and restoring: open a folder whatever state a crash left it in, restore the
newest readable checkpoint of this run, or warm-start from another run's.

The files on disk are the truth, not the `checkpoint` state file: that file may be garbage, cut
short, deleted, or written by a tool without the manager's timestamps (then
`CheckpointManager.checkpoints` is empty and a run would silently restart from step 0). So the
checkpoints are found by listing `ckpt-<step>.index` files (tried newest step first), and the state file
is rewritten from that list whenever it disagrees, so that later saves and `max_to_keep` behave.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable, List, Optional, Tuple

import tensorflow as tf

from models import build_model

CHECKPOINT_NAME = "ckpt"  # the CheckpointManager's default file prefix
STATE_FILE = "checkpoint"
_INDEX_FILE = re.compile(r"^ckpt-(\d+)\.index$")
# What a save leaves when the process dies inside it: the shards' folder before they are merged
# (`ckpt-N_temp/`; `ckpt-N.part-*` files on S3) and the state file's atomic-write temporary
# (`checkpoint.tmp<hex>`). Nothing ever reads them.
_UNFINISHED_SAVE = re.compile(r"^(ckpt-\d+(_temp.*|\.part-.*)|checkpoint\.tmp[0-9a-f]*)$")
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


def _name(path: str) -> str:
    """The last component of a path (object stores list folders with a trailing slash)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def list_checkpoints(directory: str) -> List[str]:
    """Prefixes (`<directory>/ckpt-<step>`, spelled as CheckpointManager spells them) of the
    checkpoints in `directory` that have an index file, oldest step first."""
    steps = []
    for path in tf.io.gfile.glob(tf.io.gfile.join(directory, CHECKPOINT_NAME + "-*.index")):
        match = _INDEX_FILE.match(_name(path))
        if match:  # the glob also matches S3's `ckpt-N.part-....index` shards
            steps.append(int(match.group(1)))
    return [tf.io.gfile.join(directory, f"{CHECKPOINT_NAME}-{step}") for step in sorted(steps)]


def remove_unfinished_saves(directory: str) -> List[str]:
    """Deletes what interrupted saves left in `directory` (see `_UNFINISHED_SAVE`); returns the names.

    Call it before anything saves into `directory`: a save in progress has the same names.
    """
    if not tf.io.gfile.isdir(directory):
        return []
    removed = []
    for name in map(_name, sorted(tf.io.gfile.listdir(directory))):
        if not _UNFINISHED_SAVE.match(name):
            continue
        path = tf.io.gfile.join(directory, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
        removed.append(name)
    if removed:
        logging.warning("removed what an interrupted save left in %s: %s", directory, ", ".join(removed))
    return removed


def _state_problem(directory: str, on_disk: List[str]) -> str:
    """What is wrong with the state file of `directory`, given the checkpoints `on_disk`
    ("" when it describes them as CheckpointManager would)."""
    if not tf.io.gfile.exists(tf.io.gfile.join(directory, STATE_FILE)):
        return "is missing"
    try:
        state = tf.train.get_checkpoint_state(directory)
    except ValueError as error:  # UnicodeDecodeError (garbage) is a ValueError too
        return f"cannot be read ({str(error)[:200]})"
    if state is None:  # TensorFlow logged the parse error
        return "cannot be parsed"
    listed = list(state.all_model_checkpoint_paths)
    if set(listed) != set(on_disk):  # a set: after a fallback the manager may list steps out of order
        return f"lists {len(listed)} checkpoints where the folder holds {len(on_disk)}"
    if len(state.all_model_checkpoint_timestamps) != len(listed):
        return "has no save times (so CheckpointManager would see no checkpoint at all)"
    return ""


def _modified_seconds(prefix: str) -> float:
    return tf.io.gfile.stat(prefix + ".index").mtime_nsec / 1e9


def _write_state(directory: str, prefixes: List[str], times: List[float]) -> None:
    """Writes the state file as CheckpointManager does: paths relative to `directory`, save times,
    written to a temporary name and renamed, so a crash never leaves half a file."""
    lines = [f'model_checkpoint_path: "{_name(prefixes[-1])}"']
    lines += [f'all_model_checkpoint_paths: "{_name(prefix)}"' for prefix in prefixes]
    lines += [f"all_model_checkpoint_timestamps: {seconds!r}" for seconds in times]
    # Older than every save time: the manager then counts all of them as its own to rotate.
    lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
    path = tf.io.gfile.join(directory, STATE_FILE)
    temporary = f"{path}.tmp{os.getpid():x}"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(temporary, path, overwrite=True)


def repair_state_file(directory: str) -> Tuple[List[str], str]:
    """Rewrites the state file of `directory` from its `ckpt-<step>.index` files when they disagree.

    Returns (the checkpoints on disk oldest first, the problem found or ""). Save times are the
    index files' modification times, so that CheckpointManager counts the checkpoints as its own
    and `max_to_keep` deletes the oldest as usual.
    """
    on_disk = list_checkpoints(directory)
    if not on_disk:
        return on_disk, ""
    problem = _state_problem(directory, on_disk)
    if problem:
        _write_state(directory, on_disk, [_modified_seconds(prefix) for prefix in on_disk])
        logging.warning("the checkpoint state file in %s %s; rewrote it from the %d ckpt-*.index "
                        "files there (newest %s)", directory, problem, len(on_disk), _name(on_disk[-1]))
    return on_disk, problem


def open_manager(checkpoint: tf.train.Checkpoint, directory: str, **kwargs) -> tf.train.CheckpointManager:
    """A `tf.train.CheckpointManager(checkpoint, directory, **kwargs)` over a folder made sound first:
    leftovers of interrupted saves removed, the state file rewritten if it disagrees with the
    checkpoint files (both logged)."""
    remove_unfinished_saves(directory)
    repair_state_file(directory)
    return tf.train.CheckpointManager(checkpoint, directory, checkpoint_name=CHECKPOINT_NAME, **kwargs)


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
    """Restores the newest checkpoint in `manager.directory` (at step <= `at_most`) that can be
    read; returns its path or None.

    Checkpoints are found by their index files (`list_checkpoints`), not the state file. One that
    cannot be read (a truncated or corrupted data file, a damaged index) is skipped with a warning
    and the one before it is tried; it stays on disk, and the run overwrites it when it saves
    that step again.
    """
    candidates = [p for p in list_checkpoints(manager.directory) if checkpoint_step(p) <= at_most]
    for path in reversed(candidates):
        if _try_restore(checkpoint, path):
            return path
    if candidates:
        logging.warning("none of the %d checkpoints in %s (steps up to %d) can be read",
                        len(candidates), manager.directory, checkpoint_step(candidates[-1]))
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
            exact = [p for p in list_checkpoints(manager.directory) if checkpoint_step(p) == agreed]
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
