"""Every variable the platform sets for a run, read here and nowhere else in the trainer.

Each function reads `environ` (default `os.environ`) when called, so a test or a tuning trial
that changes the environment is seen.

Vertex AI custom training (its "prepare training code" requirements):
  AIP_CHECKPOINT_DIR       -> `checkpoint_dir()`: the default model dir
  AIP_MODEL_DIR            -> `model_dir()`: the default export dir (and the Vertex layout,
                              see `export.saved_model.uses_vertex_layout`)
  AIP_TENSORBOARD_LOG_DIR  -> `tensorboard_dir()`: where summaries go
  CLOUD_ML_JOB_ID, CLOUD_ML_PROJECT_ID, AIP_MODEL_DIR, CLUSTER_SPEC -> `in_vertex_job()`
  CLOUD_ML_HP_METRIC_TAG, CLOUD_ML_HP_METRIC_FILE -> `hp_metric_tag()`, `in_tuning_trial()`
  CLUSTER_SPEC             -> `tf_config()`, converted by `tf_config_from_cluster_spec`
The cluster: TF_CONFIG -> `tf_config()`. keras-tuner's distributed search:
  KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT -> `tuner_role()`, and
  written from the cluster by `set_kerastuner_env_from_tf_config` (keras-tuner reads them).
AIP_MODEL_DIR and AIP_TENSORBOARD_LOG_DIR are read by `export.vertex_env` (the export reads them
too and never imports the trainer); `model_dir` and `tensorboard_dir` here are those.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, MutableMapping, Optional

from export.vertex_env import model_dir, tensorboard_dir  # noqa: F401 - the export reads them too

VERTEX_JOB_VARIABLES = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "CLUSTER_SPEC")
HP_METRIC_TAG, HP_METRIC_FILE = "CLOUD_ML_HP_METRIC_TAG", "CLOUD_ML_HP_METRIC_FILE"
# What makes a process a Vertex tuning trial or a member of a cluster, or names its output
# folders: one trial of this package's own tuner is a single-machine run of its own.
RUN_VARIABLES = ("TF_CONFIG", "CLUSTER_SPEC", HP_METRIC_TAG, HP_METRIC_FILE, "AIP_MODEL_DIR",
                 "AIP_CHECKPOINT_DIR")
TUNER_PREFIX = "KERASTUNER_"


def checkpoint_dir(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("AIP_CHECKPOINT_DIR", "")


def in_vertex_job(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs inside a Vertex AI job (which may pass flags of its own)."""
    return any(name in environ for name in VERTEX_JOB_VARIABLES)


def in_tuning_trial(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Vertex AI's tuning service runs this process as a trial."""
    return HP_METRIC_TAG in environ or HP_METRIC_FILE in environ


def hp_metric_tag(default: str, environ: Mapping[str, str] = os.environ) -> str:
    """The metric name a Vertex tuning trial reports under (its own tag, else `default`)."""
    return environ.get(HP_METRIC_TAG, default)


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


def tf_config(environ: MutableMapping[str, str] = os.environ, publish: bool = True) -> Optional[dict]:
    """TF_CONFIG as a dict (from CLUSTER_SPEC when only that is given); None if neither is set.

    publish: write the converted CLUSTER_SPEC into `environ["TF_CONFIG"]`, where TensorFlow's
    own `TFConfigClusterResolver` (inside `MultiWorkerMirroredStrategy`) reads the cluster.
    """
    text = environ.get("TF_CONFIG")
    if not text and environ.get("CLUSTER_SPEC"):
        text = json.dumps(tf_config_from_cluster_spec(environ["CLUSTER_SPEC"]))
        if publish:
            environ["TF_CONFIG"] = text
    return json.loads(text) if text else None


def tuner_role(environ: Mapping[str, str] = os.environ) -> str:
    """"" (not a distributed search), "chief" (runs the oracle) or "worker" (a tuner that asks
    the chief's oracle), as keras-tuner's KERASTUNER_* variables say: the oracle's address in
    KERASTUNER_ORACLE_IP/PORT, the chief's KERASTUNER_TUNER_ID "chief"."""
    if "KERASTUNER_ORACLE_IP" not in environ:
        return ""
    missing = [name for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if name not in environ]
    if missing:
        raise RuntimeError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} is not: a "
                           "distributed search needs the oracle's port and this tuner's id")
    return "chief" if "chief" in environ["KERASTUNER_TUNER_ID"] else "worker"


def set_kerastuner_env_from_tf_config(environ=os.environ) -> bool:
    """Maps a TF_CONFIG / Vertex CLUSTER_SPEC cluster onto keras-tuner's KERASTUNER_* variables.

    The chief (`chief`, or `master`/`workerpool0` task 0) runs the oracle on port
    KERASTUNER_ORACLE_PORT (default: the chief's own port in the cluster spec), listening on all
    interfaces; every other task is a tuner worker `tuner<n>` that connects to the chief's host.
    Does nothing (returns False) when KERASTUNER_ORACLE_IP is already set or the cluster has
    one task.
    """
    if "KERASTUNER_ORACLE_IP" in environ:
        return False
    cluster_config = tf_config(environ, publish=False)
    if not cluster_config:
        return False
    cluster, me = cluster_config.get("cluster", {}), cluster_config.get("task", {})
    chief_type = next((t for t in ("chief", "master") if cluster.get(t)), "worker")
    tasks = [(t, i) for t in sorted(cluster) for i in range(len(cluster[t])) if t not in ("ps", "evaluator")]
    if len(tasks) < 2 or not cluster.get(chief_type):
        return False
    host, _, port = cluster[chief_type][0].rpartition(":")
    is_chief = me.get("type") == chief_type and int(me.get("index", 0)) == 0
    environ.setdefault("KERASTUNER_ORACLE_PORT", port)
    environ["KERASTUNER_ORACLE_IP"] = "0.0.0.0" if is_chief else host
    number = tasks.index((me.get("type"), int(me.get("index", 0))))
    environ["KERASTUNER_TUNER_ID"] = "chief" if is_chief else f"tuner{number}"
    return True


def without_run_variables(environ: Mapping[str, str] = os.environ) -> dict:
    """A copy of `environ` without `RUN_VARIABLES` and keras-tuner's: for a trial's process."""
    return {k: v for k, v in environ.items() if k not in RUN_VARIABLES and not k.startswith(TUNER_PREFIX)}
