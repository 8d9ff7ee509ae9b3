"""Command line: `python -m trainer.task [flags]` parses flags into a `Config` and trains.

The command only: flags are parsed by `trainer.flags` (every config field is a flag, `--config`
reads a file first), the run is `trainer.train.train_and_evaluate`, `--tune` hands over to
`trainer.tune`. What this module owns is the console and the exit code.

A failure prints one line (what went wrong, from the error itself, which names the file or record
where it knows them) and exits 1; Ctrl-C (SIGINT) exits 130, even in a process started with SIGINT
ignored (see `_arm_sigint`); SIGTERM during training exits 143 after a checkpoint
(`trainer.preemption`). `--debug` or `SEQTRAIN_DEBUG=1` also prints the traceback.

The console shows this package's own lines only: TensorFlow's C++ logs, its import-time chatter
and absl's INFO lines are off unless `--verbosity debug` (or `SEQTRAIN_VERBOSITY=debug`) brings
them back. Parsing flags (and `--help`) imports no TensorFlow.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from typing import List, Optional, Sequence

from trainer.flags import DEBUG_ENV, DEBUG_FLAG, VERBOSITIES, VERBOSITY_ENV, VERBOSITY_FLAG, parse_config
from trainer.preemption import Preempted

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
# What to try, for errors whose own message rarely says it (matched on the class name, so that
# TensorFlow's NotFoundError and Python's FileNotFoundError share a hint without importing TF).
_HINTS = (
    (("FileNotFoundError", "NotFoundError"), "check the path (and, for gs://, the bucket and object name)"),
    (("PermissionError", "PermissionDeniedError"), "check read/write access to that path"),
    (("MemoryError", "ResourceExhaustedError"), "try a smaller --batch-size, --hidden-units or --max-length"),
)


def describe(error: BaseException) -> str:
    """One line for the user: the error's first line, its kind, and a hint where one is known."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # TensorFlow prefixes op errors with the function that ran the op: noise to the user.
    message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", lines[0]) if lines else ""
    if len(message) > 400:
        message = message[:400] + " ..."
    kind = type(error).__name__
    names = {cls.__name__ for cls in type(error).__mro__}
    hint = next((text for classes, text in _HINTS if names & set(classes)), "")
    text = f"error: {message} ({kind})" if message else f"error: {kind}"
    return text + (f"; {hint}" if hint else "") + f" [{DEBUG_FLAG} or {DEBUG_ENV}=1 shows the traceback]"


def _debugging(argv: List[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def verbosity(argv: Sequence[str]) -> str:
    """`--verbosity` from argv (read before argparse: it must act before TensorFlow loads), else
    $SEQTRAIN_VERBOSITY, else "info". Raises ValueError for a value not in VERBOSITIES."""
    value = os.environ.get(VERBOSITY_ENV, "").strip().lower() or "info"
    for index, arg in enumerate(argv):
        if arg == VERBOSITY_FLAG and index + 1 < len(argv):
            value = argv[index + 1].strip().lower()
        elif arg.startswith(VERBOSITY_FLAG + "="):
            value = arg.split("=", 1)[1].strip().lower()
    if value not in VERBOSITIES:
        raise ValueError(f"verbosity must be one of {VERBOSITIES} ({VERBOSITY_FLAG} or "
                         f"{VERBOSITY_ENV}), got {value!r}")
    return value


def configure_output(level: str) -> None:
    """Sets up logging for a verbosity level, before TensorFlow is imported.

    TF_CPP_MIN_LOG_LEVEL 3 (below debug) hides TensorFlow's C++ lines, errors included: on a
    CPU machine those are "failed call to cuInit" and oneDNN notes, and a real failure reaches
    the user as a Python exception anyway. A user's own TF_CPP_MIN_LOG_LEVEL wins.
    """
    debug = level == "debug"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    logging.basicConfig(level=logging.WARNING if level == "warning" else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    # Per-save INFO lines ("Sharding callback duration", through absl) drown the progress.
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    if not debug:
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).addFilter(_drop_harmless_warnings)
    else:
        for name in ("data", "models", "trainer", "export"):
            logging.getLogger(name).setLevel(logging.DEBUG)


# TensorFlow warnings that every export prints and that say nothing about this run: the
# SavedModel's string lookup table (TF's own note calls it "probably safe to ignore") and the
# serving functions, which never take gradients.
_HARMLESS_WARNINGS = (
    "Issue encountered when serializing table_initializer",
    "with ops with unsaved custom gradients. Will likely fail if a gradient is requested",
)


def _drop_harmless_warnings(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _HARMLESS_WARNINGS)


def import_tensorflow(level: str) -> None:
    """Imports TensorFlow; below `debug` its import-time lines are kept off the console.

    Those lines ("All log messages before absl::InitializeLog() is called are written to
    STDERR", oneDNN and CUDA notes) are written by C++ code before TensorFlow's log level
    applies, so TF_CPP_MIN_LOG_LEVEL cannot hide them: file descriptor 2 points at a scratch
    file while the import runs, and what it caught is shown if the import fails.
    """
    if level == "debug" or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns its exit code. Errors become one line on stderr (see the module
    docstring); SystemExit (argparse's usage errors, --help) passes through untouched."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debugging(argv)
    try:
        level = verbosity(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_output(level)
    previous = _arm_sigint()
    try:
        return _run(argv, level)
    except Preempted as stopped:  # the loop logged its one line (step, checkpoint) already
        return stopped.exit_code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place where any error becomes one line
        if debug:
            traceback.print_exc()
        print(describe(error), file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _arm_sigint():
    """Makes SIGINT raise KeyboardInterrupt (so `main` exits 130) whatever disposition the process
    inherited; returns the one it replaced, or None when it left it alone.

    A command started in the background by a non-interactive shell (`cmd &` in a script, as some
    CI runners and job launchers do) inherits SIGINT *ignored*, and Python then installs no
    KeyboardInterrupt handler at all: Ctrl-C or `kill -INT` was silently dropped, training went on
    and the run exited 0. SIG_DFL would kill the process without the "interrupted" line. A handler
    of Python code (Python's own, or an embedding program's) is kept.
    """
    if threading.current_thread() is not threading.main_thread():
        return None  # signal.signal works only there
    previous = signal.getsignal(signal.SIGINT)
    if previous not in (signal.SIG_IGN, signal.SIG_DFL):
        return None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return previous


def _run(argv: List[str], level: str = "info") -> int:
    if "--tune" in argv:  # hyperparameter search: each trial is one run of this command
        import_tensorflow(level)
        from trainer import tune

        return tune.main([arg for arg in argv if arg != DEBUG_FLAG])
    if not {"-h", "--help"} & set(argv):  # --help stays fast
        # Before parsing: validating --export-formats reads export/formats.py's table, and that
        # import brings TensorFlow in; unsilenced, its C++ import lines would reach the console.
        import_tensorflow(level)
    config = parse_config(argv)
    from trainer import distribution, environment
    from trainer.train import train_and_evaluate

    train_and_evaluate(config)
    distribution.exit_together(distribution.worker_info(environment.tf_config()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
