"""Strategy from the environment, and two MultiWorkerMirroredStrategy workers on 127.0.0.1 that
train in step, end with identical weights, and match one process with the same global batch."""

import json
import signal
import subprocess
import sys

import pytest

from trainer import distribution, environment
from trainer_testlib import command, max_difference, model_weights, tiny_data, tiny_flags, worker_envs

STEPS = 4


def test_cluster_spec_becomes_tf_config():
    spec = {"cluster": {"workerpool0": ["a:1"], "workerpool1": ["b:2", "c:3"], "workerpool2": ["ps:4"]},
            "task": {"type": "workerpool1", "index": 1}, "environment": "cloud"}
    tf_config = environment.tf_config_from_cluster_spec(json.dumps(spec))
    assert tf_config["cluster"] == {"worker": ["a:1", "b:2", "c:3"]}
    assert tf_config["task"] == {"type": "worker", "index": 2}
    info = distribution.worker_info(tf_config)
    assert (info.num_workers, info.task_index, info.is_chief) == (3, 2, False)
    chief = distribution.worker_info({"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                                      "task": {"type": "chief", "index": 0}})
    assert (chief.num_workers, chief.task_index, chief.is_chief) == (2, 0, True)
    with pytest.raises(ValueError, match="workerpool2"):
        environment.tf_config_from_cluster_spec(json.dumps({**spec, "task": {"type": "workerpool2", "index": 0}}))


def test_no_cluster_means_the_default_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CLUSTER_SPEC", raising=False)
    strategy, info = distribution.make_strategy()
    assert strategy.num_replicas_in_sync == 1 and info.is_chief and info.num_workers == 1


def _flags(data, model_dir, batch_size):
    # File order, no buckets: worker i reads records i, i+2, ...; so 2 workers x batch 4 see
    # the same 8 records per step as one process with batch 8.
    return tiny_flags(*data, model_dir, max_steps=STEPS, batch_size=batch_size, shuffle_buffer=1,
                      bucketing=False, collective_timeout_secs=120, op_determinism=True)


def _run_two_workers(flags) -> list:
    """Runs the trainer as two MultiWorkerMirroredStrategy workers; returns their outputs."""
    processes = []
    try:
        for env in worker_envs(2):
            processes.append(subprocess.Popen(command(flags), env=env, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        outputs = [p.communicate(timeout=300)[0] for p in processes]
    finally:
        for p in processes:  # SIGTERM is swallowed by TF's preemption watcher
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-5000:]
    return outputs


@pytest.mark.slow  # two worker processes
def test_two_workers_train_in_step_and_match_one_process(tmp_path):
    data = tiny_data(tmp_path, train_every=5)
    model_dir = tmp_path / "multi"
    # A time-based save is one decision both workers must share (distribution.agree).
    _run_two_workers(_flags(data, model_dir, 4) + ["--save-checkpoints-secs", "1"])
    assert (model_dir / "metrics.json").exists()  # the chief's
    assert not (model_dir / "workers" / "worker-1" / "metrics.json").exists()
    chief = model_weights(str(model_dir / "checkpoints" / f"ckpt-{STEPS}"))
    worker = model_weights(str(model_dir / "workers" / "worker-1" / "checkpoints" / f"ckpt-{STEPS}"))
    assert max_difference(chief, worker) == 0.0

    single_dir = tmp_path / "single"
    result = subprocess.run(command(_flags(data, single_dir, 8)), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-5000:]
    single = model_weights(str(single_dir / "checkpoints" / f"ckpt-{STEPS}"))
    difference = max_difference(chief, single)
    print(f"max |multi-worker - single process| = {difference:.3g}")
    assert difference < 1e-5
    metrics = json.loads((model_dir / "metrics.json").read_text())
    single_metrics = json.loads((single_dir / "metrics.json").read_text())
    assert metrics["eval"]["loss"] == pytest.approx(single_metrics["eval"]["loss"], abs=1e-5)


@pytest.mark.slow  # worker processes, twice
def test_workers_resume_together_when_the_chiefs_newest_checkpoint_is_unreadable(tmp_path):
    """Each worker keeps its own checkpoints. The chief's ckpt-4 is corrupted: it falls back to
    ckpt-2, and worker 1, whose ckpt-4 is fine, must step back to 2 with it, or the two would
    train out of step."""
    data = tiny_data(tmp_path, train_every=5)
    model_dir = tmp_path / "multi"
    _run_two_workers(_flags(data, model_dir, 4) + ["--save-checkpoints-steps", "2"])
    chief_ckpt = model_dir / "checkpoints" / "ckpt-4.data-00000-of-00001"
    chief_ckpt.write_bytes(b"\x5a" * chief_ckpt.stat().st_size)

    flags = _flags(data, model_dir, 4) + ["--save-checkpoints-steps", "2"]
    flags[flags.index("--max-steps") + 1] = "6"
    chief_log, worker_log = _run_two_workers(flags)
    assert "ckpt-4 cannot be read" in chief_log and "ckpt-2 at step 2" in chief_log
    assert "cannot resume past step 2" in worker_log and "ckpt-2 at step 2" in worker_log
    chief = model_weights(str(model_dir / "checkpoints" / "ckpt-6"))
    worker = model_weights(str(model_dir / "workers" / "worker-1" / "checkpoints" / "ckpt-6"))
    assert max_difference(chief, worker) == 0.0


# Two logical CPU devices stand in for two local GPUs: the strategy make_strategy would pick
# for them (MirroredStrategy over the local devices), with one data shard and iterator each.
_TWO_LOCAL_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import trainer.train as t
from trainer import distribution
t._export = lambda *a: {}
t.distribution.make_strategy = lambda *a: (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                                           distribution.WorkerInfo())
from trainer.task import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # two trainer runs in subprocesses
def test_two_local_replicas_match_one_device_with_the_same_global_batch(tmp_path):
    data = tiny_data(tmp_path, train_every=5)
    mirrored = subprocess.run([sys.executable, "-c", _TWO_LOCAL_REPLICAS, *_flags(data, tmp_path / "mirrored", 4)],
                              capture_output=True, text=True, timeout=240)
    assert mirrored.returncode == 0, mirrored.stdout[-3000:] + mirrored.stderr[-3000:]
    assert "(2 replicas x 1 micro-batches)" in mirrored.stdout
    single = subprocess.run(command(_flags(data, tmp_path / "single", 8)), capture_output=True, text=True,
                            timeout=240)
    assert single.returncode == 0, single.stderr[-5000:]
    difference = max_difference(model_weights(str(tmp_path / "mirrored" / "checkpoints" / f"ckpt-{STEPS}")),
                                model_weights(str(tmp_path / "single" / "checkpoints" / f"ckpt-{STEPS}")))
    print(f"max |2 local replicas - 1 device| = {difference:.3g}")
    assert difference < 1e-5


@pytest.mark.parametrize("cores, batch_size, expected", [
    (2, 64, 2), (2, 32, 1), (2, 96, 2), (4, 64, 2), (4, 128, 4), (3, 64, 2), (3, 96, 3), (1, 64, 1),
    (8, 8, 1)])
def test_auto_cpu_replicas_keep_32_sequences_each_and_divide_the_batch(cores, batch_size, expected):
    assert distribution.resolve_cpu_replicas(0, batch_size, cores) == expected


def test_cpu_replicas_that_do_not_divide_the_batch_are_refused():
    assert distribution.resolve_cpu_replicas(2, 8, cores=1) == 2  # asked for: taken as given
    with pytest.raises(ValueError, match="cpu_replicas=3 must divide batch_size=64"):
        distribution.resolve_cpu_replicas(3, 64, cores=4)


def _cpu_replica_flags(data, model_dir, replicas, **overrides):
    return tiny_flags(*data, model_dir, max_steps=STEPS, cpu_replicas=replicas, **overrides)


@pytest.mark.slow  # three trainer runs in subprocesses
def test_cpu_replicas_split_each_batch_and_match_one_replica(tmp_path):
    """Two CPU replicas take examples 0, 2, 4... and 1, 3, 5... of every batch of 8: the step
    sees the same 8 sequences as one replica would (dropout off, so nothing else differs)."""
    data = tiny_data(tmp_path, train_every=5)
    runs = {}
    for replicas in (2, 1):
        result = subprocess.run(command(_cpu_replica_flags(data, tmp_path / f"r{replicas}", replicas)),
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[replicas] = result
    assert "on CPU (2 replicas on its cores)" in runs[2].stdout
    assert "steps/epoch of 8 (2 replicas x 1 micro-batches)" in runs[2].stdout
    assert "steps/epoch of 8 (1 replicas x 1 micro-batches)" in runs[1].stdout
    difference = max_difference(model_weights(str(tmp_path / "r2" / "checkpoints" / f"ckpt-{STEPS}")),
                                model_weights(str(tmp_path / "r1" / "checkpoints" / f"ckpt-{STEPS}")))
    print(f"max |2 CPU replicas - 1| = {difference:.3g}")
    assert 0 < difference < 1e-5  # the sums over examples are added in another order


@pytest.mark.slow  # three trainer runs in subprocesses
def test_cpu_replicas_resume_exactly(tmp_path):
    """With dropout on (masks drawn per replica from the checkpointed generator), 2 steps, a
    new process and 2 more end bitwise equal to 4 straight steps."""
    data = tiny_data(tmp_path, train_every=5)
    dropout = dict(input_keep_prob=0.8, state_keep_prob=0.8, output_keep_prob=0.8)
    for model_dir, steps in (("straight", STEPS), ("resumed", STEPS // 2), ("resumed", STEPS)):
        flags = _cpu_replica_flags(data, tmp_path / model_dir, 2, **dropout)
        flags[flags.index("--max-steps") + 1] = str(steps)
        result = subprocess.run(command(flags), capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "2 replicas x 1 micro-batches" in result.stdout
    assert "resumed from" in result.stderr
    straight = model_weights(str(tmp_path / "straight" / "checkpoints" / f"ckpt-{STEPS}"))
    resumed = model_weights(str(tmp_path / "resumed" / "checkpoints" / f"ckpt-{STEPS}"))
    assert max_difference(straight, resumed) == 0.0
