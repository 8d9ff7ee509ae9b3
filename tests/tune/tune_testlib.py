"""Helpers of the tuning tests: tiny trainer flags, the tuner's command line and environment, and
process handling. The data fixture (`tiny_data`) is in conftest.py.

Every trial is a tiny trainer run (`TINY_FLAGS`: 4 steps of 8 sequences through 4 units); one
costs ~10 s on 2 cores, most of it starting TensorFlow in the trial's subprocess.
"""

import os
import signal
import subprocess
import sys
import time

from testlib import REPO_ROOT

TINY_FLAGS = ["--max-steps", "4", "--hidden-units", "4", "--batch-size", "8", "--seed", "7",
              "--op-determinism", "--log-step-count-steps", "4"]
SPACE = """\
cell: [lstm, gru]
learning_rate: {min: 0.001, max: 0.03, sampling: log}
pooling: [last, mean, max]
"""


def data_flags(data) -> list:
    return ["--train-data", data["train"], "--test-data", data["test"], "--search-space", data["space"]]


def tune_command(*args) -> list:
    return [sys.executable, "-m", "trainer.tune", *args]


def tune_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_") and k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def run_tune(args, timeout=600, **env):
    """Runs the tuner to completion; returns the CompletedProcess (asserting exit code 0). The
    timeout guards against a hang, not a speed target: the 3-trial search takes about 140 s on
    2 cores beside one other job, and ran past 240 s in a CI run beside two."""
    result = subprocess.run(tune_command(*args), cwd=REPO_ROOT, env=tune_env(**env), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return result


def kill(process):
    """SIGKILL (TF ignores SIGTERM in some setups) and reap."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


def wait_for(predicate, timeout, what, poll=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
