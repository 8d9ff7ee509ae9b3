"""Distributed tuning as keras-tuner does it: a chief process runs the oracle (gRPC on
127.0.0.1), a worker process asks it for trials and runs them; the chief writes the results."""

import json
import subprocess

import pytest

from testlib import REPO_ROOT, free_ports
from tune_testlib import TINY_FLAGS, data_flags, kill, tune_command, tune_env

pytestmark = pytest.mark.slow  # a chief and a worker tuner process run two trials


def test_chief_runs_the_oracle_and_the_worker_runs_the_trials(tiny_data, tmp_path):
    tuning_dir = tmp_path / "tuning"
    args = ["--tuning-dir", str(tuning_dir), "--tuner", "random", "--max-trials", "2", "--no-retrain-best",
            *data_flags(tiny_data), *TINY_FLAGS]
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_ports(1)[0])}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("chief", "worker")}
    processes = {
        name: subprocess.Popen(tune_command(*args), cwd=REPO_ROOT, stdout=logs[name], stderr=subprocess.STDOUT,
                               env=tune_env(KERASTUNER_TUNER_ID=tuner_id, **common))
        for name, tuner_id in (("chief", "chief"), ("worker", "tuner0"))}
    try:
        for name in ("worker", "chief"):
            assert processes[name].wait(timeout=180) == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    finally:
        for process in processes.values():
            kill(process)
        for log in logs.values():
            log.close()
    summaries = [json.loads(p.read_text()) for p in sorted((tuning_dir / "search").glob("trial_*/summary.json"))]
    assert len(summaries) == 2
    assert {s["tuner_id"] for s in summaries} == {"tuner0"}
    assert {s["tuner_pid"] for s in summaries} == {processes["worker"].pid}
    results = json.loads((tuning_dir / "results.json").read_text())  # written by the chief
    assert [r["status"] for r in results["trials"]] == ["COMPLETED", "COMPLETED"]
    assert results["best_trial_id"] in {"0", "1"}
    assert not (tuning_dir / "best.json").exists()
