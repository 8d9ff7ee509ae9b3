"""Command line: `python -m trainer.task [flags]` parses flags into a `Config` and trains.

Argument parsing only; everything else happens in `trainer.train.train_and_evaluate`.
Every config field is a flag (`--hidden-units 64`, `--bucketing/--no-bucketing`); `--config`
reads a YAML or JSON file first and flags override it. `--job-dir` is an alias of `--model-dir`
(Vertex AI passes it). Unknown flags are an error, except inside a Vertex AI job, where the
service may add its own: there they are logged and ignored.

A failure prints one line (what went wrong, from the error itself, which names the file or record
where it knows them) and exits 1; Ctrl-C exits 130; SIGTERM during training exits 143 after a
checkpoint (`trainer.preemption`). `--debug` or `SEQTRAIN_DEBUG=1` also prints the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import traceback
from typing import List, Optional, Sequence

# TensorFlow's C++ start-up chatter (cuInit failures on CPU machines, oneDNN notes) stays out
# unless the user sets TF_CPP_MIN_LOG_LEVEL; it must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from trainer import config as config_lib
from trainer.preemption import Preempted

_VERTEX_ENV = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "CLUSTER_SPEC")
DEBUG_FLAG, DEBUG_ENV = "--debug", "SEQTRAIN_DEBUG"
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
        description="Train, evaluate and export a recurrent sequence classifier.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML or JSON file setting any config field; flags override it")
    parser.add_argument("--job-dir", dest="model_dir", help="alias of --model-dir (set by Vertex AI)")
    parser.add_argument(DEBUG_FLAG, action="store_true", dest="debug",
                        help=f"print the full traceback of an error (or set {DEBUG_ENV}=1)")
    for section, field in config_lib.flag_fields():
        flag = "--" + field.name.replace("_", "-")
        # Vertex AI's tuning service passes `--<parameterId>`, usually spelled with underscores.
        names = [flag] + (["--" + field.name] if "_" in field.name else [])
        help_text = f"[{section}] default: {field.default!r}"
        if field.type in (bool, "bool"):
            parser.add_argument(*names, dest=field.name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(*names, dest=field.name, type=_field_type(field), help=help_text)
    return parser


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
    values.pop("debug", None)  # read by main, not a config field
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


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns its exit code. Errors become one line on stderr (see the module
    docstring); SystemExit (argparse's usage errors, --help) passes through untouched."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Per-save INFO lines ("Sharding callback duration", through absl) drown the progress.
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debugging(argv)
    try:
        return _run(argv)
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


def _run(argv: List[str]) -> int:
    if "--tune" in argv:  # hyperparameter search: each trial is one run of this command
        from trainer import tune

        return tune.main([arg for arg in argv if arg != DEBUG_FLAG])
    config = parse_config(argv)
    from trainer.train import train_and_evaluate  # after parsing: --help stays fast

    train_and_evaluate(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
