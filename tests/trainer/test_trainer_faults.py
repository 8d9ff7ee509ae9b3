"""Faults injected through the command line, in real subprocesses with real signals and files:
SIGTERM (a preempted VM), a truncated checkpoint, a damaged or missing `checkpoint` state file,
what a crash during a save leaves behind, and errors. Each test asserts what the user needs:
nothing trained is lost (the run ends with the weights of an uninterrupted run, bitwise), and
what happened is said in one line.

One uninterrupted run (`straight`) is shared: the fault tests copy its model dir, damage the
copy, run the same command again and compare the final checkpoint with the original's.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from trainer_testlib import command, model_weights, tiny_data, tiny_flags

pytestmark = pytest.mark.slow  # trainer subprocesses interrupted, damaged and resumed

STEPS = 160
STEPS_PER_EPOCH = 68  # 270 training records, batch 4: long chunks, for SIGTERM to land inside one
SAVE_EVERY = 20
RESUME_AT = 100  # where the copies of the uninterrupted run are cut back to


def _flags(data, model_dir, **overrides):
    # Dropout on (the checkpointed RNG matters) and exact determinism, as in test_trainer_resume.
    values = dict(max_steps=STEPS, batch_size=4, save_checkpoints_steps=SAVE_EVERY, eval_every_steps=40,
                  keep_checkpoint_max=100, input_keep_prob=0.8, output_keep_prob=0.8,
                  op_determinism=True, deterministic=True)
    values.update(overrides)
    return tiny_flags(*data, model_dir, **values)


def _env(**extra):
    env = {key: value for key, value in os.environ.items() if key != "SEQTRAIN_DEBUG"}
    env["PYTHONUNBUFFERED"] = "1"  # the test reads progress lines as they are printed
    env.update(extra)
    return env


def _run(flags, expect: int = 0, env=None, timeout=300):
    result = subprocess.run(command(flags), capture_output=True, text=True, timeout=timeout,
                            env=env or _env())
    assert result.returncode == expect, (result.returncode, result.stdout[-2000:], result.stderr[-4000:])
    return result


def _steps(checkpoint_dir) -> list:
    return sorted(int(p.name[5:-6]) for p in checkpoint_dir.glob("ckpt-*.index"))


def _assert_same_weights(expected_prefix, actual_prefix):
    expected, actual = model_weights(str(expected_prefix)), model_weights(str(actual_prefix))
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name], err_msg=name)


def _no_traceback(stderr: str):
    assert "Traceback" not in stderr, stderr[-4000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"), train_every=1)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """The model dir of an uninterrupted run: ckpt-20, ckpt-40, ... ckpt-160."""
    model_dir = tmp_path_factory.mktemp("straight") / "model"
    _run(_flags(data, model_dir))
    assert _steps(model_dir / "checkpoints") == list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    return model_dir


# Checkpoint files: a damaged copy of the straight run, run again.
def _copy_back_to(straight, tmp_path, step: int):
    """A copy of the straight run's model dir as a run killed right after saving `step` left it."""
    model_dir = tmp_path / "model"
    shutil.copytree(straight, model_dir)
    for path in (model_dir / "checkpoints").glob("ckpt-*"):
        if int(re.match(r"ckpt-(\d+)", path.name).group(1)) > step:
            path.unlink()
    kept = [f"ckpt-{s}" for s in range(SAVE_EVERY, step + 1, SAVE_EVERY)]
    now = time.time()  # the state file as CheckpointManager writes it, save times included
    tf.compat.v1.train.update_checkpoint_state(
        str(model_dir / "checkpoints"), kept[-1], kept, last_preserved_timestamp=now - 1000,
        all_model_checkpoint_timestamps=[now - len(kept) + i for i in range(len(kept))])
    return model_dir


def test_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path, straight, data):
    model_dir = tmp_path / "model"
    shutil.copytree(straight, model_dir)
    data_file = model_dir / "checkpoints" / f"ckpt-{STEPS}.data-00000-of-00001"
    os.truncate(data_file, data_file.stat().st_size // 2)

    result = _run(_flags(data, model_dir))
    assert f"ckpt-{STEPS} cannot be read (IndexError" in result.stderr
    assert f"ckpt-{STEPS - SAVE_EVERY} at step {STEPS - SAVE_EVERY}" in result.stderr
    # It trained the last steps again and overwrote the damaged checkpoint with the same weights.
    _assert_same_weights(straight / "checkpoints" / f"ckpt-{STEPS}",
                         model_dir / "checkpoints" / f"ckpt-{STEPS}")


def _garbage(path):
    path.write_bytes(bytes(range(128, 256)) * 4)


def _cut(path):
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])


def _delete(path):
    path.unlink()


def _without_timestamps(path):
    # What another tool (or a hand edit) writes: paths only.
    kept = range(SAVE_EVERY, RESUME_AT + 1, SAVE_EVERY)
    path.write_text("".join(f'all_model_checkpoint_paths: "ckpt-{s}"\n' for s in kept)
                    + f'model_checkpoint_path: "ckpt-{RESUME_AT}"\n')


@pytest.mark.parametrize("damage", [_garbage, _cut, _delete, _without_timestamps],
                         ids=["garbage", "cut", "deleted", "no-timestamps"])
def test_damaged_state_file_resumes_from_the_newest_checkpoint_file(tmp_path, straight, data, damage):
    """The state file is rebuilt from the ckpt-*.index files: the run resumes at the newest, and
    the manager owns the recovered checkpoints (keep_checkpoint_max deletes them as usual)."""
    model_dir = _copy_back_to(straight, tmp_path, RESUME_AT)
    damage(model_dir / "checkpoints" / "checkpoint")

    result = _run(_flags(data, model_dir, keep_checkpoint_max=2))
    assert "checkpoint state file" in result.stderr and "rewrote it" in result.stderr, result.stderr[-3000:]
    assert f"ckpt-{RESUME_AT} at step {RESUME_AT}" in result.stderr
    assert _steps(model_dir / "checkpoints") == [STEPS - SAVE_EVERY, STEPS]
    state = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    assert [p.rsplit("/", 1)[-1] for p in state.all_model_checkpoint_paths] == [
        f"ckpt-{STEPS - SAVE_EVERY}", f"ckpt-{STEPS}"]
    assert len(state.all_model_checkpoint_timestamps) == 2
    _assert_same_weights(straight / "checkpoints" / f"ckpt-{STEPS}",
                         model_dir / "checkpoints" / f"ckpt-{STEPS}")


def test_leftovers_of_an_interrupted_save_are_removed(tmp_path, straight, data):
    model_dir = _copy_back_to(straight, tmp_path, RESUME_AT)
    leftovers = [model_dir / "checkpoints" / f"ckpt-{RESUME_AT + SAVE_EVERY}_temp",
                 model_dir / "best" / f"ckpt-{RESUME_AT}_temp"]
    for folder in leftovers:
        folder.mkdir()
        (folder / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)
        (folder / "part-00000-of-00001.index").write_bytes(b"\0" * 10)
    state_temp = model_dir / "checkpoints" / "checkpoint.tmp0123456789abcdef"
    state_temp.write_text("model_checkpoint_path: ")
    leftovers.append(state_temp)

    result = _run(_flags(data, model_dir))
    assert result.stderr.count("removed what an interrupted save left") == 2, result.stderr[-3000:]
    assert f"ckpt-{RESUME_AT} at step {RESUME_AT}" in result.stderr
    assert not any(path.exists() for path in leftovers)
    assert not list(model_dir.glob("**/*_temp*"))
    _assert_same_weights(straight / "checkpoints" / f"ckpt-{STEPS}",
                         model_dir / "checkpoints" / f"ckpt-{STEPS}")


# Signals: sent to a running command once its progress reaches the end of an epoch.
def _signal_at_epoch(flags, epoch: int, signum, tmp_path, timeout=300):
    """Starts a run, sends `signum` as soon as it prints the progress line of the step that
    ends epoch `epoch - 1` (every chunk here crosses a tenth of the run, so each prints one,
    just before the next chunk starts); returns (exit code, stderr, seconds from signal to exit)."""
    stderr_path = tmp_path / f"stderr-{int(signum)}.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command(flags), stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env=_env())
        watchdog = threading.Timer(timeout, process.kill)  # a hung run must not hang the test
        watchdog.start()
        try:
            for line in process.stdout:
                if line.startswith(f"step {(epoch - 1) * STEPS_PER_EPOCH}/"):
                    break
            else:
                pytest.fail(f"the run ended before epoch {epoch}: {stderr_path.read_text()[-3000:]}")
            process.send_signal(signum)
            signalled = time.time()
            process.stdout.read()
            returncode = process.wait(timeout=60)
            return returncode, stderr_path.read_text(), time.time() - signalled
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()


def test_sigterm_saves_at_the_chunk_in_flight_exits_143_and_the_resume_is_exact(tmp_path, data, straight):
    """SIGTERM mid-chunk: one log line names the step and checkpoint, the process exits 143 within
    seconds, and the same command resumes there and ends with the uninterrupted run's weights."""
    model_dir = tmp_path / "model"
    # No save, evaluation or log is due before the end: chunks run a whole epoch (68 steps), and
    # any checkpoint before the end can only be SIGTERM's.
    flags = _flags(data, model_dir, save_checkpoints_steps=1000, eval_every_steps=1000,
                   log_step_count_steps=1000)
    returncode, stderr, seconds = _signal_at_epoch(flags, 2, signal.SIGTERM, tmp_path)
    assert returncode == 143, stderr[-4000:]
    assert seconds < 20, f"took {seconds:.1f} s to exit after SIGTERM"
    _no_traceback(stderr)
    lines = [line for line in stderr.splitlines() if "stopped by SIGTERM" in line]
    assert len(lines) == 1, stderr[-4000:]
    match = re.search(r"stopped by SIGTERM at step (\d+): checkpoint (\S+);", lines[0])
    assert match, lines[0]
    stopped_at, checkpoint = int(match.group(1)), match.group(2)
    assert checkpoint == str(model_dir / "checkpoints" / f"ckpt-{stopped_at}")
    assert _steps(model_dir / "checkpoints") == [stopped_at]
    # Stopped inside epoch 2's chunk (steps 68..136), not at its end: the compiled loop saw the flag.
    assert STEPS_PER_EPOCH <= stopped_at < 2 * STEPS_PER_EPOCH, stopped_at

    resumed = _run(flags)
    assert f"resumed from {checkpoint} at step {stopped_at}" in resumed.stderr
    _assert_same_weights(straight / "checkpoints" / f"ckpt-{STEPS}",
                         model_dir / "checkpoints" / f"ckpt-{STEPS}")


def test_sigint_exits_130_in_one_line(tmp_path, data):
    returncode, stderr, _ = _signal_at_epoch(_flags(data, tmp_path / "model"), 2, signal.SIGINT, tmp_path)
    assert returncode == 130, stderr[-4000:]
    _no_traceback(stderr)
    assert stderr.rstrip().splitlines()[-1] == "interrupted"


# Errors: what the user sees.
def _bad_data(tmp_path, data):
    train = tmp_path / "train.jsonl"
    lines = open(data[0]).read().splitlines(True)
    lines[2] = '{"features": [[1.0, 2.0], [3.0]], "label": "1"}\n'  # ragged: a bad record
    train.write_text("".join(lines))
    return str(train), data[1]


def test_an_error_is_one_line_naming_the_file_and_record(tmp_path, data):
    bad = _bad_data(tmp_path, data)
    result = _run(_flags(bad, tmp_path / "model"), expect=1)
    _no_traceback(result.stderr)
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: ") and f"{bad[0]}: line 3" in last, last
    assert "SEQTRAIN_DEBUG=1" in last


@pytest.mark.parametrize("how", ["env", "flag"])
def test_debug_shows_the_traceback(tmp_path, data, how):
    bad = _bad_data(tmp_path, data)
    flags = _flags(bad, tmp_path / "model") + (["--debug"] if how == "flag" else [])
    result = _run(flags, expect=1, env=_env(SEQTRAIN_DEBUG="1") if how == "env" else None)
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")
