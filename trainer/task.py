"""Command line: `python -m trainer.task [flags]` parses flags into a `Config` and trains.

Argument parsing only; everything else happens in `trainer.train.train_and_evaluate`.
Every config field is a flag (`--hidden-units 64`, `--bucketing/--no-bucketing`); `--config`
reads a YAML or JSON file first and flags override it. `--job-dir` is an alias of `--model-dir`
(Vertex AI passes it). Unknown flags are an error, except inside a Vertex AI job, where the
service may add its own: there they are logged and ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import List, Optional, Sequence


from trainer import config as config_lib
from trainer.preemption import Preempted

_VERTEX_ENV = ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "CLUSTER_SPEC")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.task",
        description="Train, evaluate and export a recurrent sequence classifier.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML or JSON file setting any config field; flags override it")
    parser.add_argument("--job-dir", dest="model_dir", help="alias of --model-dir (set by Vertex AI)")
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
    file_values = _read_config_file(values.pop("config")) if "config" in values else {}
    base = config_lib.from_dict(file_values)
    updates = {name: {} for name in config_lib.SECTIONS}
    for section, field in config_lib.flag_fields():
        if field.name in values:
            updates[section][field.name] = values[field.name]
    return config_lib.Config(**{
        name: dataclasses.replace(getattr(base, name), **updates[name]) for name in config_lib.SECTIONS
    })


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # per-save INFO lines drown the progress
    argv = sys.argv[1:] if argv is None else argv
    if "--tune" in argv:  # hyperparameter search: each trial is one run of this command
        from trainer import tune

        return tune.main(argv)
    config = parse_config(argv)
    from trainer.train import train_and_evaluate  # after parsing: --help stays fast

    try:
        train_and_evaluate(config)
    except Preempted as stopped:  # the loop logged its one line (step, checkpoint) already
        return stopped.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
