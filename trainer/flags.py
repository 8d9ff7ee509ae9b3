"""Flags: `build_parser` and `parse_config` turn command-line arguments into a `Config`.

Every config field is a flag named after it (`hidden_units` -> `--hidden-units`; booleans get
`--bucketing/--no-bucketing`), its help the first sentence of the field's documentation (see
`trainer.config.field_docs`) with the default. `--config` reads a YAML or JSON file first and
flags override it. `--job-dir` is an alias of `--model-dir` (Vertex AI passes it). Unknown flags
are an error, except inside a Vertex AI job, where the service may add its own: there they are
logged and ignored. Imports no TensorFlow (`--help` stays fast), except to read a `--config` file
through tf.io.gfile. The tuner (`trainer.tune`) parses the trainer's flags with these too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
from typing import Optional, Sequence

from trainer import config as config_lib
from trainer import environment

DEBUG_FLAG, DEBUG_ENV = "--debug", "SEQTRAIN_DEBUG"
VERBOSITY_FLAG, VERBOSITY_ENV = "--verbosity", "SEQTRAIN_VERBOSITY"
# warning: this package's warnings and errors (and the progress and final table, which are not
# logs); info: also its INFO lines (the default); debug: also TensorFlow's C++ logs, its
# import-time lines and the INFO lines of the tensorflow and absl loggers.
VERBOSITIES = ("warning", "info", "debug")
# Flags of the command that are not config fields.
COMMAND_FLAGS = ("config", "debug", "verbosity")


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


def read_config_file(path: str) -> dict:
    """The mapping of field names to values that a `--config` file holds."""
    values = config_lib.read_mapping_file(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of field names to values")
    return values


def parse_config(argv: Optional[Sequence[str]] = None) -> config_lib.Config:
    """Turns command-line arguments into a resolved Config."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if environment.in_vertex_job():
            logging.warning("ignoring flags not known to the trainer (passed by the service): %s", unknown)
        else:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    values = vars(args)
    for name in ("debug", "verbosity"):  # read by main, not config fields
        values.pop(name, None)
    file_values = read_config_file(values.pop("config")) if "config" in values else {}
    base = config_lib.from_dict(file_values)
    updates = {name: {} for name in config_lib.SECTIONS}
    for section, field in config_lib.flag_fields():
        if field.name in values:
            updates[section][field.name] = values[field.name]
    return config_lib.Config(**{
        name: dataclasses.replace(getattr(base, name), **updates[name]) for name in config_lib.SECTIONS
    })
