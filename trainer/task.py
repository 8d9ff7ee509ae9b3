"""Command line: `python -m trainer.task [flags]` parses flags into a `Config` and trains.

Argument parsing only; everything else happens in `trainer.train.train_and_evaluate`.
Every config field is a flag (`--hidden-units 64`, `--bucketing/--no-bucketing`); `--config`
reads a YAML or JSON file first and flags override it. `--job-dir` is an alias of `--model-dir`
(Vertex AI passes it). Unknown flags are an error, except inside a Vertex AI job, where the
service may add its own: there they are logged and ignored.

A failure prints one line (what went wrong, from the error itself, which names the file or record
where it knows them) and exits 1; Ctrl-C (SIGINT) exits 130, even in a process started with SIGINT
ignored (see `_arm_sigint`); SIGTERM during training exits 143 after a checkpoint
(`trainer.preemption`). `--debug` or `SEQTRAIN_DEBUG=1` also prints the traceback.

The console shows this package's own lines only: TensorFlow's C++ logs, its import-time chatter
and absl's INFO lines are off unless `--verbosity debug` (or `SEQTRAIN_VERBOSITY=debug`) brings
them back. Parsing flags (and `--help`) imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from typing import List, Optional, Sequence

from trainer import config as config_lib
from trainer.preemption import Preempted

_VERTEX_ENV = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "CLUSTER_SPEC")
DEBUG_FLAG, DEBUG_ENV = "--debug", "SEQTRAIN_DEBUG"
VERBOSITY_FLAG, VERBOSITY_ENV = "--verbosity", "SEQTRAIN_VERBOSITY"
# warning: this package's warnings and errors (and the progress and final table, which are not
# logs); info: also its INFO lines (the default); debug: also TensorFlow's C++ logs, its
# import-time lines and the INFO lines of the tensorflow and absl loggers.
VERBOSITIES = ("warning", "info", "debug")
# Flags of the command that are not config fields.
COMMAND_FLAGS = ("config", "debug", "verbosity")
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
# What to try, for errors whose own message rarely says it (matched on the class name, so that
# TensorFlow's NotFoundError and Python's FileNotFoundError share a hint without importing TF).
_HINTS = (
    (("FileNotFoundError", "NotFoundError"), "check the path (and, for gs://, the bucket and object name)"),
    (("PermissionError", "PermissionDeniedError"), "check read/write access to that path"),
    (("MemoryError", "ResourceExhaustedError"), "try a smaller --batch-size, --hidden-units or --max-length"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.task",
        usage="%(prog)s [--config FILE] [--FLAG VALUE ...] [--tune ...]",
        description="Train, evaluate and export a recurrent sequence classifier. Every config "
                    "field is a flag; a --config file sets any of them first.",
        epilog="README.md's flag table gives each meaning in full. Hyperparameter search: "
               "python -m trainer.task --tune --help.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file setting any config field; flags override it")
    parser.add_argument("--job-dir", dest="model_dir", metavar="DIR", help="alias of --model-dir (set by Vertex AI)")
    parser.add_argument(DEBUG_FLAG, action="store_true", dest="debug",
                        help=f"print the full traceback of an error (or set {DEBUG_ENV}=1)")
    parser.add_argument(VERBOSITY_FLAG, choices=VERBOSITIES, dest="verbosity",
                        help=f"warning: only warnings and errors besides the progress and the "
                             f"final table; info: also this package's INFO lines; debug: also "
                             f"TensorFlow's C++ and absl logs (or set {VERBOSITY_ENV}; "
                             f"default: info)")
    groups = {section: parser.add_argument_group(f"{section} flags") for section in config_lib.SECTIONS}
    docs = {section: config_lib.field_docs(cls) for section, cls in config_lib.section_classes().items()}
    for section, field in config_lib.flag_fields():
        flag = "--" + field.name.replace("_", "-")
        help_text = _help_text(docs[section].get(field.name, ""), field.default)
        # Vertex AI's tuning service passes `--<parameterId>`, usually spelled with underscores:
        # accepted, but not repeated in --help.
        for names, shown in (([flag], help_text), (["--" + field.name] if "_" in field.name else [],
                                                     argparse.SUPPRESS)):
            if not names:
                continue
            if field.type in (bool, "bool"):
                groups[section].add_argument(*names, dest=field.name, help=shown,
                                             action=argparse.BooleanOptionalAction)
            else:
                kind = _field_type(field)
                groups[section].add_argument(*names, dest=field.name, type=kind, help=shown,
                                             metavar={int: "INT", float: "FLOAT"}.get(kind, "TEXT"))
    return parser


def first_sentence(text: str) -> str:
    """The first sentence of a field's meaning (the README has the rest)."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z\"`(])", text.strip(), maxsplit=1)[0]


def _constants(text: str) -> str:
    """`CELLS` -> lstm | gru | ...: the config modules' constants a meaning names, by value."""
    from data import config as data_config
    from models import config as model_config

    def value(match):
        name = match.group(1) or match.group(2)
        for module in (config_lib, data_config, model_config):
            if hasattr(module, name):
                found = getattr(module, name)
                return " | ".join(map(str, found)) if isinstance(found, tuple) else f"{found:,}"
        return match.group(0)

    return re.sub(r"`([A-Z][A-Z0-9_]+)`|\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", value, text)


def _help_text(meaning: str, default) -> str:
    meaning = _constants(meaning)
    shown = json.dumps(default) if isinstance(default, str) else repr(default)
    # argparse formats help with %: a literal percent sign must be doubled.
    return f"{first_sentence(meaning)} (default: {shown})".replace("%", "%%")


def _field_type(field):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    return {"int": int, "float": float}.get(kind, str)


def _read_config_file(path: str) -> dict:
    values = config_lib.read_mapping_file(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of field names to values")
    return values


def parse_config(argv: Optional[Sequence[str]] = None) -> config_lib.Config:
    """Turns command-line arguments into a resolved Config."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if any(name in os.environ for name in _VERTEX_ENV):
            logging.warning("ignoring flags not known to the trainer (passed by the service): %s", unknown)
        else:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    values = vars(args)
    for name in ("debug", "verbosity"):  # read by main, not config fields
        values.pop(name, None)
    file_values = _read_config_file(values.pop("config")) if "config" in values else {}
    base = config_lib.from_dict(file_values)
    updates = {name: {} for name in config_lib.SECTIONS}
    for section, field in config_lib.flag_fields():
        if field.name in values:
            updates[section][field.name] = values[field.name]
    return config_lib.Config(**{
        name: dataclasses.replace(getattr(base, name), **updates[name]) for name in config_lib.SECTIONS
    })


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
    from trainer import distribution
    from trainer.train import train_and_evaluate

    train_and_evaluate(config)
    distribution.exit_together(distribution.worker_info(distribution.read_tf_config()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
