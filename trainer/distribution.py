"""Which `tf.distribute.Strategy` to train under, read from the environment, and who this process is.

* `TF_CONFIG` with more than one worker (or Vertex AI's `CLUSTER_SPEC`, converted to
  `TF_CONFIG`) -> `MultiWorkerMirroredStrategy`, with a collective timeout so that a dead peer
  ends the run with an error instead of hanging it;
* several local GPUs -> `MirroredStrategy`;
* else the default strategy.

The strategy must be made before TensorFlow runs anything else in the process (collective ops
are configured at startup), so `train_and_evaluate` calls `make_strategy` first.

Each worker reads its own shard of the data through its own checkpointable iterator and keeps
its own checkpoint (a distributed dataset iterator cannot be checkpointed): the chief's lives in
the model dir, worker i's in `<model_dir>/workers/worker-i`. Only the chief writes summaries,
the best checkpoint, metrics and the export.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """This process's place in the job.

    num_workers: processes in the job; task_index: this one's rank among them (chief = 0);
    is_chief: writes the model dir's checkpoints, summaries, metrics and export.
    """

    num_workers: int = 1
    task_index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.task_index == 0

    def checkpoint_dir(self, model_dir: str) -> str:
        """Where this worker keeps its checkpoints (model, optimizer, its iterator, RNG)."""
        if self.is_chief:
            return tf.io.gfile.join(model_dir, "checkpoints")
        return tf.io.gfile.join(model_dir, "workers", f"worker-{self.task_index}", "checkpoints")

    def work_dir(self, model_dir: str) -> str:
        """The model dir for the chief; a private folder (prepared data, summaries) for a worker."""
        if self.is_chief:
            return model_dir
        return tf.io.gfile.join(model_dir, "workers", f"worker-{self.task_index}")


def tf_config_from_cluster_spec(cluster_spec: str) -> dict:
    """Vertex AI's `CLUSTER_SPEC` JSON -> the `TF_CONFIG` dict (workerpool0 is the chief)."""
    spec = json.loads(cluster_spec)
    pools = spec["cluster"]
    # workerpool0 holds the chief, workerpool1 the other workers; 2 (servers) and 3 (evaluators)
    # have no part in a MultiWorkerMirroredStrategy job.
    workers = list(pools.get("workerpool0", [])) + list(pools.get("workerpool1", []))
    task = spec["task"]
    if task["type"] not in ("workerpool0", "workerpool1"):
        raise ValueError(f"CLUSTER_SPEC task type {task['type']!r}: this trainer runs only in "
                         "workerpool0 (chief) and workerpool1 (workers)")
    offset = 0 if task["type"] == "workerpool0" else len(pools.get("workerpool0", []))
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": offset + int(task["index"])},
            "environment": spec.get("environment", "cloud")}


def read_tf_config() -> Optional[dict]:
    """TF_CONFIG as a dict, setting it from CLUSTER_SPEC when only that is given; None if neither."""
    if not os.environ.get("TF_CONFIG") and os.environ.get("CLUSTER_SPEC"):
        os.environ["TF_CONFIG"] = json.dumps(tf_config_from_cluster_spec(os.environ["CLUSTER_SPEC"]))
    text = os.environ.get("TF_CONFIG")
    return json.loads(text) if text else None


def worker_info(tf_config: Optional[dict]) -> WorkerInfo:
    """Counts chief and worker tasks; the chief, when listed, is rank 0."""
    if not tf_config:
        return WorkerInfo()
    cluster = tf_config.get("cluster", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    rank = index if kind == "chief" else chiefs + index
    return WorkerInfo(num_workers=max(chiefs + workers, 1), task_index=rank)


def make_strategy(timeout_seconds: int = 300):
    """(strategy, WorkerInfo) for this process, from TF_CONFIG / CLUSTER_SPEC and the local GPUs."""
    tf_config = read_tf_config()
    info = worker_info(tf_config)
    if info.num_workers > 1:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        logging.info("MultiWorkerMirroredStrategy: worker %d of %d", info.task_index, info.num_workers)
        return strategy, info
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logging.info("MirroredStrategy over %d GPUs", len(gpus))
        return tf.distribute.MirroredStrategy(), info
    return tf.distribute.get_strategy(), info


def _gather_over_workers(strategy, value: int):
    """int64 [replicas]: `value` from every replica of every worker (ReduceOp has no MIN/MAX)."""
    local = strategy.run(lambda: tf.constant([value], tf.int64))
    return strategy.gather(local, axis=0)


def agree(strategy, flag: bool) -> bool:
    """True on every worker when `flag` is True on any (a local clock must not split decisions)."""
    if strategy.extended._in_multi_worker_mode():  # noqa: SLF001 - the public API has no such query
        return bool(tf.reduce_max(_gather_over_workers(strategy, 1 if flag else 0)))
    return flag


def min_over_workers(strategy, value: int) -> int:
    """The minimum of `value` over all workers (the value itself outside multi-worker mode)."""
    if strategy.extended._in_multi_worker_mode():  # noqa: SLF001
        return int(tf.reduce_min(_gather_over_workers(strategy, value)))
    return value
