"""The run's one progress display: in place on a terminal, plain lines at a cadence in a log."""

import io
import logging

from trainer.progress import SHORT_RUN_EVALS, Progress, format_duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream, clock, total=1200, chunk=8, seconds_per_chunk=0.05, **kwargs):
    progress = Progress(total, stream=stream, clock=clock, **kwargs)
    with progress:
        for step in range(chunk, total + 1, chunk):
            clock.now += seconds_per_chunk
            progress.update(step, loss=1.0 / step, sequences_per_second=500.0, tokens_per_second=7500.0)
    return progress


def test_a_log_gets_a_plain_line_per_tenth_of_the_run_and_the_last_step():
    stream, clock = io.StringIO(), Clock()
    _run(stream, clock)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 9 <= len(lines) <= 11, lines
    assert lines[-1].startswith("step 1200/1200 100%")
    assert "seq/s" in lines[0] and "tok/s" in lines[0] and "ETA" in lines[0] and "loss" in lines[0]


def test_a_slow_run_in_a_log_prints_every_interval_too():
    stream, clock = io.StringIO(), Clock()
    _run(stream, clock, total=80, chunk=8, seconds_per_chunk=31.0, fraction=0.5)
    assert len(stream.getvalue().splitlines()) == 10  # every chunk took longer than 30 s


def test_eta_comes_from_recent_chunks_never_the_first_and_the_end_says_how_long():
    clock = Clock()
    progress = Progress(1000, stream=io.StringIO(), clock=clock)
    clock.now += 60.0  # the first chunk traces and compiles: it says nothing about the rate
    assert progress.line(10, 0.5, 1, 1).endswith("ETA --")
    clock.now += 9.0
    assert progress.line(20, 0.5, 1, 1).endswith("ETA --")
    clock.now += 9.0
    assert progress.line(30, 0.5, 1, 1).endswith("ETA 14:33")  # 10 steps in 9 s: 970 more in 873 s
    for step in range(40, 160, 10):  # slower now: the window forgets the fast chunks
        clock.now += 18.0
        text = progress.line(step, 0.5, 1, 1)
    assert text.endswith("ETA 25:30")  # 850 steps at 1.8 s a step
    clock.now += 5.0
    assert progress.line(1000, 0.5, 1, 1).endswith(f"took {format_duration(clock.now - 1000.0)}")
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"


def test_the_tenths_of_an_odd_total_end_at_the_total_without_a_repeated_line():
    stream, clock = io.StringIO(), Clock()
    _run(stream, clock, total=1251, chunk=9)  # 139 chunks of 9 steps, the bundled job's
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("step 1251/1251 100%"), lines
    assert not any(line.startswith("step 1250/") for line in lines)


def test_a_terminal_gets_one_line_rewritten_in_place():
    stream, clock = Terminal(), Clock()
    _run(stream, clock, seconds_per_chunk=1.0)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # the line is kept at the end
    assert text.count("\r") >= 100
    assert text.rstrip().split("\r")[-1].startswith("step 1200/1200 100%")


def test_short_runs_print_every_evaluation_long_runs_only_a_new_best():
    for evaluations, expected in ((SHORT_RUN_EVALS, ["eval 1", "eval 2", "eval 3"]), (150, ["eval 1", "eval 3"])):
        stream = io.StringIO()
        progress = Progress(100, stream=stream, evaluations=evaluations, clock=Clock())
        progress.evaluation("eval 1", summary="eval loss 0.5", improved=True)
        progress.evaluation("eval 2", summary="eval loss 0.6", improved=False)
        progress.evaluation("eval 3", summary="eval loss 0.4", improved=True)
        assert stream.getvalue().splitlines() == expected
        assert progress.line(50, 0.1, 1, 1).endswith("| eval loss 0.4")


def test_a_note_or_a_log_line_on_a_terminal_clears_the_progress_line_first():
    stream = Terminal()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with Progress(100, stream=stream, clock=Clock()) as progress:
            progress.update(10, 0.5, 1, 1)
            progress.note("  early stop")
            progress.update(20, 0.5, 1, 1)
            logging.getLogger("trainer.test").warning("a warning")
        assert not handler.filters  # the filter goes with the display
    finally:
        logging.getLogger().removeHandler(handler)
    screen = stream.getvalue()
    drawn = len(Progress(100, stream=io.StringIO(), clock=Clock()).line(10, 0.5, 1, 1))
    assert "\r" + " " * drawn + "\r  early stop\n" in screen
    assert "\r  a warning" not in screen and " \ra warning\n" in screen


def test_a_disabled_display_prints_nothing():
    stream, clock = Terminal(), Clock()
    _run(stream, clock, enabled=False)
    assert stream.getvalue() == ""
