"""One progress display for a whole training run, fit for a terminal and for a log.

On a terminal (`stream.isatty()`) it is a single line rewritten in place (carriage return and
spaces, no escape codes): steps done of the total, the share, the last chunk's loss, sequences
and real tokens per second, the time left, and the latest evaluation in short. Anywhere else
(Vertex AI's logs, CI, a file) it prints plain lines, never a carriage return: one each time the
run passes another `fraction` of its steps or `interval_secs` pass, whichever comes first, and
one at the end.

Evaluation lines (`evaluation`): a run with at most `SHORT_RUN_EVALS` planned evaluations prints
every one; a longer run prints one only when the best checkpoint changes, and shows the others
in the progress line. `note` prints a line that stays (an early stop).
"""

from __future__ import annotations

import collections
import logging
import math
import shutil
import sys
import time
from typing import Callable, Optional, TextIO

# Runs with at most this many evaluations print each one on its own line.
SHORT_RUN_EVALS = 10
# A terminal line is redrawn at most this often (the last step always is).
REDRAW_SECS = 0.1
# The time left comes from the rate over this many recent chunks: early chunks trace and compile
# (XLA once per padded length), so a rate since the start would overstate it for long.
RATE_WINDOW = 10


def format_duration(seconds: float) -> str:
    """3725 -> "1:02:05", 65 -> "1:05"."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """The run's progress, from `start_step` (a resumed run) to `total_steps`.

    Args:
      total_steps: the step the run ends at.
      start_step: the step it starts from.
      evaluations: evaluations the run plans (0 without an eval split); decides whether each
        is printed (see the module docstring).
      stream: where to write (default: sys.stdout at construction).
      enabled: False (a non-chief worker) prints nothing.
      interval_secs, fraction: the cadence of plain lines when `stream` is not a terminal.
      clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, total_steps: int, start_step: int = 0, evaluations: int = 0,
                 stream: Optional[TextIO] = None, enabled: bool = True, interval_secs: float = 30.0,
                 fraction: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.total = max(int(total_steps), 1)
        self.start = int(start_step)
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self.tty = enabled and _isatty(self.stream)
        self.short = evaluations <= SHORT_RUN_EVALS
        self.interval = interval_secs
        self._divisions = max(1, round(1.0 / fraction))
        self._marks_passed = 0
        self._clock = clock
        self._started = clock()
        # (time, step) after each chunk but the first, which traces and compiles.
        self._recent = collections.deque(maxlen=RATE_WINDOW + 1)
        self._updates = 0
        self._last_print = self._started
        self._last_draw = -float("inf")
        self._drawn = 0  # characters of the terminal line now on screen
        self._pending = ""  # the latest state, not yet printed as a plain line
        self._step = self.start
        self.eval_summary = ""
        self._filter = _ClearLineFilter(self) if self.tty else None

    def __enter__(self) -> "Progress":
        if self._filter is not None:  # a log line clears the progress line before it is written
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._filter)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def line(self, step: int, loss: float, sequences_per_second: float, tokens_per_second: float) -> str:
        """The progress text for `step` (no line end); call once per chunk, in step order."""
        now = self._clock()
        self._updates += 1
        if self._updates > 1 and (not self._recent or step > self._recent[-1][1]):
            self._recent.append((now, step))
        if step >= self.total:
            when = f"took {format_duration(now - self._started)}"
        else:
            rate = 0.0
            if len(self._recent) > 1:
                (then, first), (_, last) = self._recent[0], self._recent[-1]
                rate = (last - first) / (now - then) if now > then else 0.0
            when = f"ETA {format_duration((self.total - step) / rate)}" if rate > 0 else "ETA --"
        text = (f"step {step}/{self.total} {100.0 * step / self.total:3.0f}%  loss {loss:.4f}  "
                f"{sequences_per_second:,.0f} seq/s  {tokens_per_second:,.0f} tok/s  {when}")
        return text + (f"  | {self.eval_summary}" if self.eval_summary else "")

    def _next_mark(self) -> int:
        """The step of the next tenth (with fraction 0.1) of the run; the last is `total`."""
        span = self.total - self.start
        return self.start + math.ceil((self._marks_passed + 1) * span / self._divisions)

    def update(self, step: int, loss: float, sequences_per_second: float,
               tokens_per_second: float) -> None:
        """After a chunk of steps ended at `step`."""
        if not self.enabled:
            return
        self._step = step
        text = self.line(step, loss, sequences_per_second, tokens_per_second)
        now = self._clock()
        if self.tty:
            if now - self._last_draw >= REDRAW_SECS or step >= self.total:
                self._draw(text)
                self._last_draw = now
            return
        self._pending = text
        if step >= self._next_mark() or step >= self.total or now - self._last_print >= self.interval:
            self._print_pending()

    def evaluation(self, line: str, summary: str, improved: bool) -> None:
        """An evaluation ended: `line` in full, `summary` for the progress line; `improved`
        when the best checkpoint changed."""
        if not self.enabled:
            return
        self.eval_summary = summary
        if self.short or improved:
            self.note(line)

    def note(self, text: str) -> None:
        """A line that stays on screen and in the log."""
        if not self.enabled:
            return
        if self.tty:
            self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_draw = -float("inf")  # redraw the progress line at the next update

    def clear(self) -> None:
        """Terminal only: removes the progress line (a log line or a note follows)."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def close(self) -> None:
        """Ends the display: the terminal line is kept, a plain line not yet printed is."""
        if not self.enabled:
            return
        if self._filter is not None:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._filter)
            self._filter = None
        if self.tty:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = 0
        elif self._pending:
            self._print_pending()

    def _print_pending(self) -> None:
        self.stream.write(self._pending + "\n")
        self.stream.flush()
        self._pending = ""
        self._last_print = self._clock()
        while self._marks_passed < self._divisions and self._next_mark() <= self._step:
            self._marks_passed += 1

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = text[:width]
        self.stream.write("\r" + text + " " * max(self._drawn - len(text), 0))
        self.stream.flush()
        self._drawn = len(text)


class _ClearLineFilter(logging.Filter):
    """Lets every record through, after clearing the terminal's progress line."""

    def __init__(self, progress: Progress):
        super().__init__()
        self._progress = progress

    def filter(self, record) -> bool:
        self._progress.clear()
        self._progress._last_draw = -float("inf")
        return True


def describe_devices(strategy, num_workers: int = 1) -> str:
    """"CPU", "1 GPU", "2 workers x 4 GPUs"...: where the replicas of `strategy` run."""
    import tensorflow as tf

    kind = next((kind for kind in ("TPU", "GPU") if tf.config.list_logical_devices(kind)), "CPU")
    per_worker = max(strategy.num_replicas_in_sync // max(num_workers, 1), 1)
    if kind == "CPU":
        text = f"CPU ({per_worker} replicas on its cores)" if per_worker > 1 else "CPU"
    else:
        text = f"{per_worker} {kind}{'s' if per_worker > 1 else ''}"
    return f"{num_workers} workers x {text}" if num_workers > 1 else text


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
