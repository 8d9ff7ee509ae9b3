"""Which `tf.distribute.Strategy` to train under, read from the environment, and who this process is.

* `TF_CONFIG` with more than one worker (or Vertex AI's `CLUSTER_SPEC`, converted to
  `TF_CONFIG`) -> `MultiWorkerMirroredStrategy`, with a collective timeout so that a dead peer
  ends the run with an error instead of hanging it;
* several local GPUs -> `MirroredStrategy`;
* no GPU and more than one CPU core (`TrainConfig.cpu_replicas`) -> `MirroredStrategy` over as
  many logical CPU devices, which *split* each batch between them: TensorFlow's compiled step
  runs its small matmuls and gate arithmetic on about one core, so a 2-core machine ran the
  throughput workload 1.3x faster with two half-batch replicas (the global batch, its data and
  the optimizer step are those of one replica; only the dropout masks are drawn per half);
* else the default strategy.

The strategy must be made before TensorFlow runs anything else in the process (collective ops
are configured at startup), so `train_and_evaluate` calls `make_strategy` first.

Each worker reads its own shard of the data through its own checkpointable iterator and keeps
its own checkpoint (a distributed dataset iterator cannot be checkpointed): the chief's lives in
the model dir, worker i's in `<model_dir>/workers/worker-i`. Only the chief writes summaries,
the best checkpoint, metrics and the export.

A peer that dies makes the others' next collective fail; `watch_peers` turns that error into one
line (`PeerLost`: which peer, after which step, the checkpoint to resume from). At the end every
worker waits for the chief's export (`finish_together`), and a run that succeeded ends every
process at the same moment (`exit_together`), so a clean run logs no error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
from typing import Callable, Iterator, List, Optional, Tuple

import tensorflow as tf
from tensorflow.python.eager import context  # the coordination-service barrier has no public API

from trainer import environment

# How long the other workers wait at the end for the chief's test evaluation and export.
FINISH_TIMEOUT_SECS = 3600
# How long a process that succeeded waits for the others to succeed too before it exits.
EXIT_TIMEOUT_SECS = 60
# What a collective raises when a peer is gone: aborted by the coordination service after the
# peer's heartbeats stop (~10 s), timed out (`--collective-timeout-secs`), or cancelled.
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                     tf.errors.CancelledError)
# Only those whose message says a collective or the coordination service failed: an
# UnavailableError from storage (a checkpoint on gs://) is no lost peer.
_COLLECTIVE_MESSAGE = re.compile(r"collective|coordination|heartbeat|unhealthy", re.IGNORECASE)
_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")
# What the user reads for what TensorFlow's message says (first match wins).
LOST_PEER_CAUSES = (
    (re.compile(r"stopped sending heartbeats"), "it stopped sending heartbeats"),
    (re.compile(r"connection refused|failed to connect", re.IGNORECASE), "its connection was refused"),
    (re.compile(r"socket closed|connection reset|broken pipe", re.IGNORECASE), "its connection broke"),
)


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """This process's place in the job.

    num_workers: processes in the job; task_index: this one's rank among them (chief = 0);
    is_chief: writes the model dir's checkpoints, summaries, metrics and export.
    """

    num_workers: int = 1
    task_index: int = 0
    cpu_replicas: int = 1  # local CPU replicas that share each batch of this process (1: none)

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


def make_strategy(timeout_seconds: int = 300, cpu_replicas: int = 1, batch_size: int = 0):
    """(strategy, WorkerInfo) for this process, from TF_CONFIG / CLUSTER_SPEC, the local GPUs
    and, on a machine without one, `cpu_replicas` (0 = auto, see `resolve_cpu_replicas`) for a
    batch of `batch_size` sequences."""
    tf_config = environment.tf_config()
    info = worker_info(tf_config)
    if info.num_workers > 1:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        logging.info("MultiWorkerMirroredStrategy: worker %d of %d", info.task_index, info.num_workers)
        return strategy, info
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        logging.info("MirroredStrategy over %d GPUs", len(gpus))
        return tf.distribute.MirroredStrategy(), info
    if not gpus:
        devices = _cpu_devices(resolve_cpu_replicas(cpu_replicas, batch_size, cpu_cores()))
        if len(devices) > 1:
            strategy = tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
            return strategy, dataclasses.replace(info, cpu_replicas=len(devices))
    return tf.distribute.get_strategy(), info


# Auto CPU replicas keep at least this many sequences each: below it a replica's matmuls get too
# small to gain from a core of their own (measured only on 2 cores, with half-batches of 32).
MIN_CPU_REPLICA_BATCH = 32


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; cgroup quotas not counted)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_cpu_replicas(cpu_replicas: int, batch_size: int, cores: int) -> int:
    """How many CPU replicas share each batch: `cpu_replicas` when set (it must divide
    `batch_size`), else (0 = auto) the largest divisor of `batch_size` that is at most `cores`
    and leaves each replica at least `MIN_CPU_REPLICA_BATCH` sequences (1 when none does)."""
    if cpu_replicas:
        if batch_size and batch_size % cpu_replicas:
            raise ValueError(f"cpu_replicas={cpu_replicas} must divide batch_size={batch_size}: "
                             "each replica takes an equal share of every batch")
        return cpu_replicas
    limit = min(cores, batch_size // MIN_CPU_REPLICA_BATCH)
    chosen = max([n for n in range(1, limit + 1) if batch_size % n == 0], default=1)
    logging.info("cpu_replicas=auto: %d (%d cores, batch of %d, at least %d sequences a replica)",
                 chosen, cores, batch_size, MIN_CPU_REPLICA_BATCH)
    return chosen


def _cpu_devices(count: int) -> List[str]:
    """The names of `count` logical CPU devices, made now; [] for one, or when TensorFlow was
    initialized earlier in the process with fewer (it cannot make more then: said in the log)."""
    if count <= 1:
        return []
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # devices already initialized: use what is there
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < count:
        logging.warning("cpu_replicas=%d: TensorFlow already runs on %d CPU device(s) in this "
                        "process, so the step runs unreplicated", count, len(devices))
        return []
    return devices[:count]


class PeerLost(RuntimeError):
    """A multi-worker job lost a peer: the message names it (task and address where TensorFlow's
    error does), the step this worker reached and the checkpoint a restart resumes from."""


def lost_peers(error: BaseException, tf_config: Optional[dict]) -> List[str]:
    """The other tasks a collective error names, as "worker 1 (host:port)"; [] if it names none.

    TensorFlow names tasks `/job:worker/replica:0/task:1` (or `/job:worker/task:1`); this
    process's own task is left out, and the address comes from TF_CONFIG's cluster.
    """
    cluster = (tf_config or {}).get("cluster", {})
    task = (tf_config or {}).get("task", {})
    own = (task.get("type", "worker"), int(task.get("index", 0)))
    names = []
    for job, index in dict.fromkeys((job, int(i)) for job, i in _TASK_NAME.findall(str(error))):
        if (job, index) == own:
            continue
        addresses = cluster.get(job, [])
        notes = (["the chief"] if job == "chief" or (job == "worker" and index == 0 and not cluster.get("chief"))
                 else []) + ([addresses[index]] if index < len(addresses) else [])
        names.append(f"{job} {index}" + (f" ({', '.join(notes)})" if notes else ""))
    return names


def peer_lost(error: BaseException, info: WorkerInfo, step: int, checkpoint: Optional[str]) -> PeerLost:
    """The one-line `PeerLost` for a collective `error` that ended this worker at `step`."""
    peers = lost_peers(error, environment.tf_config())
    who = " and ".join(peers) if peers else "a peer"
    cause = next((text for pattern, text in LOST_PEER_CAUSES if pattern.search(str(error))), None)
    if cause is None:
        cause = ("no answer within --collective-timeout-secs" if isinstance(error, tf.errors.DeadlineExceededError)
                 else type(error).__name__)
    resume = (f"the newest checkpoint is {checkpoint}: restart every worker with the same "
              "--model-dir to resume from it" if checkpoint else
              "no checkpoint was saved yet: a restart begins at step 0")
    return PeerLost(f"lost {who} of the {info.num_workers}-worker job after step {step} ({cause}); "
                    f"{resume}")


@contextlib.contextmanager
def watch_peers(info: WorkerInfo, progress: Callable[[], Tuple[int, Optional[str]]]) -> Iterator[None]:
    """Inside it, a collective that fails because a peer is gone raises `PeerLost` from
    TensorFlow's error (which names an op, not what happened or what to do).

    progress: () -> (the step this worker reached, the checkpoint to resume from or None),
      called only after a failure.
    """
    try:
        yield
    except COLLECTIVE_ERRORS as error:
        if info.num_workers == 1 or not _COLLECTIVE_MESSAGE.search(str(error)):
            raise
        step, checkpoint = progress()
        raise peer_lost(error, info, step, checkpoint) from error


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


def finish_together(info: WorkerInfo) -> None:
    """Blocks until every worker of a multi-worker job has reached the end of its run.

    Why: a worker that exits while the chief still evaluates and exports stops sending heartbeats
    to the coordination service (which the chief hosts) but is held at process exit until the
    chief leaves; 10 s later the service declares it crashed and the chief logs an error-level
    `StartAbort UNAVAILABLE ... tasks have crashed` and may take much longer to exit. Waiting here,
    heartbeats still running, lets all processes shut down together. The barrier is the
    coordination service's, not a collective, so `--collective-timeout-secs` does not bound the
    export. Does nothing outside a multi-worker job.
    """
    if info.num_workers > 1:
        context.context().wait_at_barrier("seqtrain/finished", FINISH_TIMEOUT_SECS * 1000)


def exit_together(info: WorkerInfo) -> None:
    """Ends this process of a multi-worker job that succeeded, at the same moment as the others:
    a coordination-service barrier, then stdout, stderr and logging flushed and `os._exit(0)`.
    Returns (does nothing) outside a multi-worker job, or when the barrier fails.

    Why: the chief hosts the coordination service. A normal interpreter exit tears TensorFlow
    down in 1 to 4 s, differently in each process; a worker still tearing down when the chief
    is gone sends its next heartbeat to a closed port and logs an error-level
    `StartAbort UNAVAILABLE ... Failed to send RPC to coordination service` on a run that
    succeeded (about one run in two on 2 cores). Every output is written and closed before
    this is called, so skipping the interpreter's teardown loses nothing.
    """
    if info.num_workers <= 1:
        return
    try:
        context.context().wait_at_barrier("seqtrain/exit", EXIT_TIMEOUT_SECS * 1000)
    except tf.errors.OpError as error:  # a peer failed after all: exit as usual
        logging.warning("workers did not reach the end together (%s); exiting on its own",
                        str(error).splitlines()[0])
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(0)  # noqa: SLF001 - see above
