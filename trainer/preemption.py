"""SIGTERM (a preempted spot VM or Vertex AI job) ends training with a checkpoint, not a loss.

The platform sends SIGTERM and kills the process about 30 s later. Python's default is to die at
once, throwing away every step since the last save. While the training loop runs, `StopSignal`
replaces that: SIGTERM only records the request; the loop ends the chunk in flight, saves the
checkpoint it always saves (model, optimizer, RNG, step: the step is the data position), logs one line and raises
`Preempted`, which `python -m trainer.task` turns into exit code 143 (128 + SIGTERM, what a shell
reports for a process that SIGTERM ended). The same command with the same model dir resumes at
exactly that step.

A chunk is one `tf.function` call, and Python runs signal handlers only in the main thread between
bytecodes, so a handler alone would wait for the whole chunk. The C-level handler also writes the
signal number to the `signal.set_wakeup_fd` pipe at once; a helper thread reading it sets `variable`,
which the compiled loop reads before every step, so the chunk stops after the step in flight.
"""

from __future__ import annotations

import os
import signal
import threading

EXIT_CODE = 128 + int(signal.SIGTERM)


class Preempted(Exception):
    """Training stopped on SIGTERM; `checkpoint` (None if no step was trained) holds `step`."""

    exit_code = EXIT_CODE

    def __init__(self, step: int, checkpoint):
        where = f"checkpoint {checkpoint}" if checkpoint else "nothing to save (no step trained yet)"
        super().__init__(f"stopped by SIGTERM at step {step}: {where}; run the same command with the "
                         "same --model-dir to resume there")
        self.step, self.checkpoint = step, checkpoint


class StopSignal:
    """A context manager: inside it SIGTERM sets `requested` (and `variable`) instead of killing.

    in_loop: also keep `variable` (a bool `tf.Variable`) for the compiled loop to read before
      each step. Multi-worker runs pass False: a worker that stopped mid-chunk alone would leave
      its peers waiting in a collective, so there the workers agree on `requested` between chunks.

    Outside the main thread (where `signal.signal` is refused) it does nothing and SIGTERM keeps
    its usual meaning. The previous handler (and wakeup fd) come back on exit.
    """

    def __init__(self, in_loop: bool = True):
        import tensorflow as tf  # here, not at the top: `trainer.task --help` stays fast

        self.requested = False
        self.variable = tf.Variable(False, trainable=False, name="stop_requested") if in_loop else None
        self._installed = False
        self._previous_handler = None
        self._write_fd = -1

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_signal)
        self._installed = True
        if self.variable is not None:
            self._watch_wakeup_fd()
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._installed:
            return
        # None: the previous handler was not Python's (TF's C++ preemption notifier, say); the
        # default is the nearest Python can restore.
        signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
        self._installed = False
        if self._write_fd >= 0:
            signal.set_wakeup_fd(-1)
            os.close(self._write_fd)  # the watcher reads end-of-file and ends
            self._write_fd = -1

    def _watch_wakeup_fd(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if previous != -1:  # someone else's (an event loop's): leave it theirs, stop between chunks only
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)
            return
        self._write_fd = write_fd
        threading.Thread(target=self._watch, args=(read_fd,), name="sigterm-watcher", daemon=True).start()

    def _watch(self, read_fd: int) -> None:
        try:
            while True:
                signals = os.read(read_fd, 64)  # one byte per signal that has a Python handler
                if not signals:
                    return
                if int(signal.SIGTERM) in signals:
                    self._request()
        finally:
            os.close(read_fd)

    def _on_signal(self, signum, frame) -> None:
        # Only a flag: this runs between any two bytecodes of the main thread, maybe inside TF.
        self.requested = True

    def _request(self) -> None:
        self.requested = True
        self.variable.assign(True)
