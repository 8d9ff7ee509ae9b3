"""The search space of `trainer.tune`: which config fields vary, over what, and how a trial's
values become a `Config`.

A space maps config field names (any flag of `trainer.task`) to one of:

* a list: a choice, `cell: [lstm, gru]`;
* a mapping with `min` and `max` (optional `step`, `sampling: linear|log|reverse_log`): an
  integer range for an int field, a float range for a float field;
* a mapping with `values`: a choice, as a list is;
* a scalar: a fixed value, shown in the results like a tuned one.

It is read from YAML or JSON (`--search-space FILE`) or is `DEFAULT_SPACE`, and is declared up
front in a `keras_tuner.HyperParameters` given to the oracle: distributed workers then all see the
whole space before their first trial.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, Mapping

import keras_tuner

from trainer import config as config_lib

# A space that suits the small sequence sets this trainer is built for. `embedding_dim` only
# matters for token inputs: on dense features two trials that differ only there train alike.
DEFAULT_SPACE: Dict[str, Any] = {
    "cell": ["lstm", "gru"],
    "hidden_units": [16, 32, 64, 128],
    "num_layers": {"min": 1, "max": 2},
    "bidirectional": [False, True],
    "pooling": ["last", "mean", "max", "attention"],
    "input_keep_prob": {"min": 0.7, "max": 1.0, "step": 0.1},
    "state_keep_prob": {"min": 0.7, "max": 1.0, "step": 0.1},
    "output_keep_prob": {"min": 0.5, "max": 1.0, "step": 0.1},
    "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
    "batch_size": [16, 32, 64],
    "embedding_dim": [32, 64, 128],
}

# The tuner decides these for every trial; a space may not vary them.
NOT_TUNABLE = ("model_dir", "export_dir", "warm_start_from", "train_data", "eval_data", "test_data")


def _fields() -> Dict[str, tuple]:
    """{field name: (section, dataclass field)} over every flag of the trainer."""
    return {field.name: (section, field) for section, field in config_lib.flag_fields()}


def _kind(field) -> str:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    return kind if kind in ("int", "float", "bool") else "str"


def read_space(path: str) -> Dict[str, Any]:
    """Reads a YAML (.yaml/.yml) or JSON space file; raises ValueError unless it holds a mapping."""
    space = config_lib.read_mapping_file(path)
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{path}: expected a mapping of config field names to choices or ranges, "
                         f"got {type(space).__name__}")
    return space


def without(space: Mapping[str, Any], fixed: Iterable[str]) -> Dict[str, Any]:
    """The space minus the names in `fixed` (flags the user set keep the value they were given)."""
    fixed = {name.replace("-", "_") for name in fixed}
    return {name: spec for name, spec in space.items() if name.replace("-", "_") not in fixed}


def _coerce(kind: str, value, name: str):
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"search space {name!r}: expected true/false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or float(value) != int(value):
            raise ValueError(f"search space {name!r}: expected an integer, got {value!r}")
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def declare(space: Mapping[str, Any], hp: keras_tuner.HyperParameters = None) -> keras_tuner.HyperParameters:
    """Declares every entry of `space` in `hp` (a new one by default) and returns it.

    Raises ValueError for an unknown or untunable field, an empty choice, a range on a
    bool/str field or a malformed entry, naming the entry.
    """
    hp = hp or keras_tuner.HyperParameters()
    fields = _fields()
    if not space:
        raise ValueError("the search space is empty: nothing to tune")
    for raw_name, spec in space.items():
        name = raw_name.replace("-", "_")
        if name not in fields:
            raise ValueError(f"search space {raw_name!r}: not a trainer flag (see python -m trainer.task --help)")
        if name in NOT_TUNABLE:
            raise ValueError(f"search space {raw_name!r}: set by the tuner for each trial, cannot be tuned")
        kind = _kind(fields[name][1])
        if isinstance(spec, dict) and "values" in spec:
            spec = list(spec["values"])
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ValueError(f"search space {raw_name!r}: empty choice list")
            values = [_coerce(kind, v, name) for v in spec]
            if kind == "bool" and sorted(set(values)) == [False, True]:
                hp.Boolean(name)
            else:
                hp.Choice(name, values)
        elif isinstance(spec, dict):
            unknown = set(spec) - {"min", "max", "step", "sampling"}
            if unknown or "min" not in spec or "max" not in spec:
                raise ValueError(f"search space {raw_name!r}: a range needs min and max (and optionally "
                                 f"step, sampling), got keys {sorted(spec)}")
            sampling = spec.get("sampling", "linear")
            if kind == "int":
                hp.Int(name, _coerce(kind, spec["min"], name), _coerce(kind, spec["max"], name),
                       step=spec.get("step"), sampling=sampling)
            elif kind == "float":
                hp.Float(name, float(spec["min"]), float(spec["max"]), step=spec.get("step"),
                         sampling=sampling)
            else:
                raise ValueError(f"search space {raw_name!r}: a {kind} field takes a choice list, not a range")
        else:
            hp.Fixed(name, _coerce(kind, spec, name))
    return hp


def apply(config: config_lib.Config, values: Mapping[str, Any]) -> config_lib.Config:
    """`config` with the trial's values set; names keras-tuner adds (`tuner/...`) are skipped.

    Float values on a stepped grid come back as 0.7999999999; they are rounded to 10 significant
    digits so the flag a person copies from the results is the value that was trained.
    Raises ValueError (from the config classes) for a combination the trainer rejects.
    """
    fields = _fields()
    updates: Dict[str, Dict[str, Any]] = {section: {} for section in config_lib.SECTIONS}
    for name, value in values.items():
        if name.startswith("tuner/"):
            continue
        if name not in fields:
            raise ValueError(f"hyperparameter {name!r} is not a trainer flag")
        section, field = fields[name]
        kind = _kind(field)
        if kind == "float":
            value = float(f"{float(value):.10g}")
        updates[section][name] = _coerce(kind, value, name)
    return config_lib.Config(**{
        section: dataclasses.replace(getattr(config, section), **updates[section])
        for section in config_lib.SECTIONS})


def to_flat_dict(config: config_lib.Config) -> Dict[str, Any]:
    """Every flag field of `config` as {name: value}, the form `--config FILE` reads back."""
    return {field.name: getattr(getattr(config, section), field.name)
            for section, field in config_lib.flag_fields()}
