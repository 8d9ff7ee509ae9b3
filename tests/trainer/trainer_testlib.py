"""Shared helpers of the trainer tests: tiny slices of the bundled data, tiny configs, and a
command line that runs the trainer in a subprocess without exporting (export/ has its own tests)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

from testlib import PINNED, free_ports, write_bundled_slice
from trainer import config as config_lib
from trainer.flags import parse_config

# Runs `python -m trainer.task ARGS` with the export step stubbed out.
RUN_WITHOUT_EXPORT = (
    "import sys, trainer.train as t; t._export = lambda *a: {}; "
    "from trainer.task import main; sys.exit(main(sys.argv[1:]))")


def tiny_data(root, train_every: int = 6, train_limit: int = 0, eval_every: int = 40):
    """(train path, eval path): a slice of the bundled train file and one of its test file."""
    train, evaluation = root / "train.jsonl", root / "eval.jsonl"
    write_bundled_slice("train", train, train_every, train_limit)
    write_bundled_slice("test", evaluation, eval_every)
    return str(train), str(evaluation)


def tiny_flags(train: str, evaluation: str, model_dir, **overrides) -> list:
    """Flags for a seconds-long run: 8 hidden units, batch 8, `PINNED` settings, the eval
    file as the test split too."""
    values = {"train-data": train, "eval-data": evaluation, "test-data": evaluation,
              "model-dir": str(model_dir), "hidden-units": 8, "batch-size": 8, "max-steps": 6,
              "seed": 3, "warmup-steps": 2, **PINNED}
    values.update(overrides)
    values = {key.replace("_", "-"): value for key, value in values.items()}
    flags = []
    for key, value in values.items():
        if value is True:
            flags.append(f"--{key}")
        elif value is False:
            flags.append(f"--no-{key}")
        else:
            flags += [f"--{key}", str(value)]
    return flags


def tiny_config(train: str, evaluation: str, model_dir, **overrides) -> config_lib.Config:
    return parse_config(tiny_flags(train, evaluation, model_dir, **overrides))


def command(flags) -> list:
    return [sys.executable, "-c", RUN_WITHOUT_EXPORT, *flags]


def model_weights(checkpoint_prefix: str) -> dict:
    """{name: array} of the trainable model variables in a training checkpoint.

    The object graph reaches them through the optimizer first, so that is where they are keyed.
    """
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint_prefix)
            if name.startswith("optimizer/_trainable_variables/")}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def worker_envs(num_workers: int = 2, **extra) -> list:
    """One environment per MultiWorkerMirroredStrategy worker on 127.0.0.1 (TF_CONFIG set,
    CLUSTER_SPEC removed), plus `extra` variables; worker i's address is in its TF_CONFIG."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(num_workers)]}
    envs = []
    for index in range(num_workers):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   **extra)
        env.pop("CLUSTER_SPEC", None)
        envs.append(env)
    return envs
