"""Decoding: a raw record's payload -> a plain dict shaped like a JSON Lines record.

After decoding, every format looks the same to `data.records`: `tokens` is a list of str,
`features` a list of lists of float, `labels` a list, `label`/`weight`/`id`/`length` scalars.
Only what the format itself says is interpreted here (CSV cells are strings, SequenceExample
values are typed lists); checking the values against the contract is `data.records`' job.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict

import tensorflow as tf
from google.protobuf.message import DecodeError

from data import bad_records as br
from data.readers import CSV, JSONL, RawRecord


class FieldNames:
    """How the decoder treats field names it cannot type from the format alone.

    Args:
      tokens: field names whose CSV cell holds space-separated tokens.
      lists: field names whose CSV cell holds a `|`-separated list and whose SequenceExample
        context value is always a list (multi-label targets).
      steps: field names whose CSV cell holds one space-separated value per step (tags).
      numbers: {field name: float or int} for CSV cells that hold a number.
    """

    def __init__(self, tokens=("tokens",), lists=("labels",), steps=("tags",), numbers=None):
        self.tokens, self.lists, self.steps = set(tokens), set(lists), set(steps)
        self.numbers = dict(numbers or {})


def decode(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    """Returns the record as a dict, or raises `BadRecordError` (kind "unparseable")."""
    if raw.error:
        raise _bad(raw, raw.error)
    if raw.fmt == JSONL:
        return _decode_json(raw)
    if raw.fmt == CSV:
        return _decode_csv(raw, names)
    return _decode_sequence_example(raw, names)


def _bad(raw: RawRecord, reason: str, field: str = br.WHOLE_RECORD, kind: str = br.UNPARSEABLE):
    return br.BadRecordError(raw.file, raw.number, field, reason, kind, raw.unit)


def _decode_json(raw: RawRecord) -> Dict[str, Any]:
    try:
        value = json.loads(raw.payload)
    except ValueError as e:
        raise _bad(raw, f"not valid JSON ({e})") from None
    except RecursionError:
        # The parser recurses once per nesting level; no record of the contract nests deeper
        # than a few levels, so this is a bad record like any other, not a crash.
        raise _bad(raw, "JSON nested too deeply to parse (more levels than Python's "
                   f"recursion limit of {sys.getrecursionlimit()})") from None
    if not isinstance(value, dict):
        raise _bad(raw, f"expected a JSON object, got {type(value).__name__}")
    return value


def _decode_csv(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    header, cells = raw.payload
    if len(cells) != len(header):
        raise _bad(raw, f"row has {len(cells)} cells, the header has {len(header)}")
    record = {}
    for name, cell in zip(header, cells):
        if name == "features":
            raise _bad(raw, "dense feature sequences are not carried in CSV; use JSON Lines or "
                       "TFRecord", field=name, kind=br.BAD_VALUE)
        if name in names.lists:
            record[name] = [x.strip() for x in cell.split("|") if x.strip()]
        elif name in names.tokens or name in names.steps:
            record[name] = cell.split()
        elif not cell.strip():
            continue  # an empty cell is an absent field
        elif name in names.numbers:
            try:
                record[name] = names.numbers[name](cell.strip())
            except ValueError:
                raise _bad(raw, f"expected a number, got {cell!r}", field=name,
                           kind=br.BAD_VALUE) from None
        else:
            record[name] = cell
    return record


def _feature_values(feature: tf.train.Feature):
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None, []
    return kind, list(getattr(feature, kind).value)


def _as_text(raw: RawRecord, field: str, value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(raw, f"bytes {value[:20]!r} are not UTF-8", field=field) from None
    return value


def _decode_sequence_example(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    try:
        example = tf.train.SequenceExample.FromString(raw.payload)
    except DecodeError as e:
        raise _bad(raw, f"not a tf.train.SequenceExample ({e})") from None
    record: Dict[str, Any] = {}
    for name, feature in example.context.feature.items():
        _, values = _feature_values(feature)
        values = [_as_text(raw, name, v) for v in values]
        if name in names.lists:
            record[name] = values
        elif len(values) == 1:
            record[name] = values[0]
        elif values:
            record[name] = values
    for name, feature_list in example.feature_lists.feature_list.items():
        steps = []
        for t, feature in enumerate(feature_list.feature):
            kind, values = _feature_values(feature)
            if kind == "float_list":
                steps.append(values)
            elif len(values) == 1:
                steps.append(_as_text(raw, name, values[0]))
            else:
                raise _bad(raw, f"step {t} holds {len(values)} values, expected one",
                           field=name, kind=br.BAD_VALUE)
        record[name] = steps
    return record
