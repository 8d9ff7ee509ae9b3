"""Kill -9 a run at an arbitrary step, start the same command again: with deterministic data and
op determinism the final weights equal an uninterrupted run's, dropout included."""

import signal
import subprocess
import time

import numpy as np
import pytest

from trainer_testlib import command, model_weights, tiny_data, tiny_flags

pytestmark = pytest.mark.slow  # a trainer subprocess killed and resumed

STEPS = 40


def _flags(train, evaluation, model_dir):
    # Dropout on, so the checkpointed RNG matters; a checkpoint every 2 steps; eval every 10.
    return tiny_flags(train, evaluation, model_dir, max_steps=STEPS, save_checkpoints_steps=2,
                      eval_every_steps=10, keep_checkpoint_max=50, input_keep_prob=0.8,
                      output_keep_prob=0.8, op_determinism=True, deterministic=True)


def _run(flags, timeout=240):
    result = subprocess.run(command(flags), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _run_and_kill(flags, checkpoint_dir, after_index: int, timeout=240):
    """Starts a run and SIGKILLs it right after `ckpt-<after_index>.index` appears."""
    process = subprocess.Popen(command(flags), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    target = checkpoint_dir / f"ckpt-{after_index}.index"
    try:
        while not target.exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    train, evaluation = tiny_data(tmp_path)
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    _run(_flags(train, evaluation, straight_dir))

    returncode = _run_and_kill(_flags(train, evaluation, resumed_dir), resumed_dir / "checkpoints", 6)
    assert returncode == -signal.SIGKILL
    killed_at = sorted(int(p.name[5:-6]) for p in (resumed_dir / "checkpoints").glob("ckpt-*.index"))
    assert killed_at and killed_at[-1] < STEPS, killed_at
    result = _run(_flags(train, evaluation, resumed_dir))
    assert "resumed from" in result.stderr

    straight = model_weights(str(straight_dir / "checkpoints" / f"ckpt-{STEPS}"))
    resumed = model_weights(str(resumed_dir / "checkpoints" / f"ckpt-{STEPS}"))
    assert straight.keys() == resumed.keys() and straight
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)
    # The run really moved: the weights differ from an early checkpoint's.
    early = model_weights(str(straight_dir / "checkpoints" / "ckpt-6"))
    assert any(not np.array_equal(early[name], straight[name]) for name in straight)
