"""Validation: a decoded record -> a canonical `Example`, or a `BadRecordError`.

`RecordValidator` applies the input contract (see data/README.md) to one record at a time:
exactly one input and at most one target field, a non-empty sequence, features of one finite
width, `length` == T, tags of length T, labels from the training label set, and the
`max_length` policy. The first good training record fixes the input and target kinds (and D);
eval, test and prediction files are checked against the kinds, D and labels of the `DataSpec`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from data import bad_records as br
from data.config import DataConfig
from data.decode import FieldNames, decode
from data.raw_record import RawRecord
from data.spec import INPUT_KINDS, TARGET_KINDS
from data.tokenizer import tokenize


@dataclasses.dataclass
class Example:
    """One valid record.

    Attributes:
      id: the record id, or "<file>:<record number>" when the record has none.
      weight: example weight (1.0 when absent).
      features: float32 [T, D] for dense input, else None.
      tokens: T token strings for token/text input (text already tokenized), else None.
      label: the class (label targets), labels: the classes (multi-label, possibly empty),
        tags: T classes (per-step targets); None when the record has no such target.
      truncated: the sequence was cut to `max_length`.
    """

    id: str
    weight: float = 1.0
    features: Optional[np.ndarray] = None
    tokens: Optional[Tuple[str, ...]] = None
    label: Optional[str] = None
    labels: Optional[Tuple[str, ...]] = None
    tags: Optional[Tuple[str, ...]] = None
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.features) if self.features is not None else len(self.tokens)

    @property
    def has_target(self) -> bool:
        return self.label is not None or self.labels is not None or self.tags is not None

    def target_labels(self) -> Tuple[str, ...]:
        """Every class string the target mentions (one per step for tags)."""
        if self.label is not None:
            return (self.label,)
        return self.labels if self.labels is not None else (self.tags or ())


class RecordValidator:
    """Turns raw records into `Example`s under one configuration.

    Args:
      config: field names, `max_length`, `long_sequences`, `lowercase`.
      input_kind, target_kind: kinds fixed by the spec; None lets the first record decide.
      feature_dim: D fixed by the spec (0: the first dense record decides).
      labels: the allowed class strings (None: any; the training split collects them).
      require_targets: a record without a target is bad (False for prediction files).
    """

    def __init__(self, config: DataConfig, *, input_kind: Optional[str] = None,
                 target_kind: Optional[str] = None, feature_dim: int = 0,
                 labels: Optional[Sequence[str]] = None, require_targets: bool = True):
        self.config = config
        self.input_kind, self.target_kind, self.feature_dim = input_kind, target_kind, feature_dim
        self.labels = None if labels is None else frozenset(labels)
        self.require_targets = require_targets
        self.input_field, _, kind = config.input_field.partition(":")
        if kind and kind not in INPUT_KINDS:
            raise ValueError(f"input_field kind must be one of {INPUT_KINDS}, got {kind!r}")
        self.input_field_kind = kind or (self.input_field if self.input_field in INPUT_KINDS
                                         else "")
        self.target_field, _, kind = config.target_field.partition(":")
        if kind and kind not in TARGET_KINDS:
            raise ValueError(f"target_field kind must be one of {TARGET_KINDS}, got {kind!r}")
        self.target_field_kind = kind or (self.target_field if self.target_field in TARGET_KINDS
                                          else "")
        self.names = self._field_names()

    def _field_names(self) -> FieldNames:
        tokens = {"tokens"} | ({self.input_field} if self.input_field_kind == "tokens" else set())
        lists, steps = {"labels"}, {"tags"}
        if self.target_field:
            (steps if self.target_field_kind == "tags" else lists).add(self.target_field)
        c = self.config
        return FieldNames(tokens=tokens, lists=lists, steps=steps,
                          numbers={c.weight_field: float, c.length_field: int})

    def __call__(self, raw: RawRecord) -> Example:
        """Returns the record's `Example`; raises `BadRecordError`."""
        result = self.validate_chunk([raw])[0]
        if isinstance(result, br.BadRecordError):
            raise result
        return result

    def validate_chunk(self, raws: Sequence[RawRecord]) -> List[Union[Example, br.BadRecordError]]:
        """`__call__` over records in order: an `Example` or the `BadRecordError` for each.

        The texts of the chunk are tokenized in one TensorFlow call, before the records are
        checked one by one (in order: the first valid record fixes kinds and widths). A call a
        record cost about 0.75 ms, most of the preparation of a text data set.
        """
        decoded, texts = [], []
        for raw in raws:
            try:
                record = decode(raw, self.names)
            except br.BadRecordError as error:
                decoded.append(error)
                continue
            text = self._text_of(record)
            decoded.append((record, text is not None))
            if text is not None:
                texts.append(text)
        tokenized = iter(self._tokenize(texts))
        results: List[Union[Example, br.BadRecordError]] = []
        for raw, item in zip(raws, decoded):
            if isinstance(item, br.BadRecordError):
                results.append(item)
                continue
            record, has_text = item
            tokens = next(tokenized) if has_text else None
            try:
                results.append(self._validate(raw, record, tokens))
            except br.BadRecordError as error:
                results.append(error)
        return results

    def _text_of(self, record: Dict[str, Any]) -> Optional[str]:
        """The text the record's input field holds, to tokenize ahead; None if it holds none
        (or the field is in doubt: `_validate` then reports it, or tokenizes on its own)."""
        try:
            field, kind = self._input_field(record, lambda *args: br.BadRecordError("", 0, *args))
        except br.BadRecordError:
            return None
        value = record[field]
        return value if kind == "text" and isinstance(value, str) else None

    def _tokenize(self, texts: Sequence[str]) -> List[Tuple[str, ...]]:
        """`data.tokenizer.tokenize` of each text (the serving graph's own ops), in one call."""
        if not texts:
            return []
        ragged = tokenize(tf.constant(list(texts)), self.config.lowercase)
        return [tuple(t.decode("utf-8") for t in row) for row in ragged.to_list()]

    def _validate(self, raw: RawRecord, record: Dict[str, Any], tokens: Optional[Tuple[str, ...]]) -> Example:
        """Checks one decoded record; `tokens`: its text, tokenized ahead (None: not done)."""

        def bad(field, reason, kind):
            return br.BadRecordError(raw.file, raw.number, field, reason, kind, raw.unit)

        field, kind = self._input_field(record, bad)
        value = record[field]
        example = Example(id=f"{raw.file}:{raw.number}")
        if kind == "features":
            example.features = self._features(value, field, bad)
        elif kind == "tokens":
            example.tokens = self._tokens(value, field, bad)
        else:
            if not isinstance(value, str):
                raise bad(field, f"expected a string of text, got {type(value).__name__}",
                          br.BAD_VALUE)
            example.tokens = tokens if tokens is not None else self._tokenize([value])[0]
        length = example.length
        if length == 0:
            raise bad(field, "the sequence is empty", br.EMPTY_SEQUENCE)
        self._check_length_field(record, length, bad)
        self._target(record, example, length, bad)
        self._weight_and_id(record, example, bad)
        self._max_length(example, field, bad)
        if self.input_kind is None:
            self.input_kind = kind
        if self.target_kind is None and example.has_target:
            self.target_kind = self._target_kind_of(example)
        if kind == "features" and not self.feature_dim:
            self.feature_dim = example.features.shape[1]
        return example

    # Input ---------------------------------------------------------------------------------

    def _input_field(self, record: Dict[str, Any], bad) -> Tuple[str, str]:
        if self.input_field:
            field = self.input_field
            if field not in record:
                raise bad(field, "the record has no input field", br.INPUT_FIELDS)
            kind = self.input_field_kind or _input_kind_of(record[field])
        else:
            present = [k for k in INPUT_KINDS if k in record]
            if len(present) != 1:
                what = "none" if not present else " and ".join(repr(p) for p in present)
                raise bad("/".join(present or INPUT_KINDS),
                          f"expected exactly one input field of {INPUT_KINDS}, found {what}",
                          br.INPUT_FIELDS)
            field = kind = present[0]
        if self.input_kind and kind != self.input_kind:
            raise bad(field, f"holds {kind!r} input but the data set's input is "
                      f"{self.input_kind!r}", br.INPUT_FIELDS)
        return field, kind

    def _features(self, value, field: str, bad) -> np.ndarray:
        if not isinstance(value, list):
            raise bad(field, f"expected a list of steps, got {type(value).__name__}", br.BAD_VALUE)
        if not value:
            raise bad(field, "the sequence is empty", br.EMPTY_SEQUENCE)
        if _plain_number_grid(value) and (not self.feature_dim or len(value[0]) == self.feature_dim):
            return self._finite(value, field, bad)
        width = None  # not a plain grid of numbers: find the first step at fault, for the message
        for t, step in enumerate(value):
            if not isinstance(step, list) or not all(_is_number(x) for x in step):
                raise bad(field, f"step {t} is not a list of numbers", br.BAD_VALUE)
            if width is None:
                width = len(step)
            elif len(step) != width:
                raise bad(field, f"step {t} has {len(step)} values, step 0 has {width}",
                          br.RAGGED_FEATURES)
        if width == 0:
            raise bad(field, "steps hold no values", br.FEATURE_WIDTH)
        if self.feature_dim and width != self.feature_dim:
            raise bad(field, f"steps have {width} values, the data set's feature width is "
                      f"{self.feature_dim}", br.FEATURE_WIDTH)
        return self._finite(value, field, bad)

    @staticmethod
    def _finite(value, field: str, bad) -> np.ndarray:
        """float32 [T, D] of a checked grid of numbers; a value not finite in float32 is bad."""
        with np.errstate(over="ignore"):
            features = np.asarray(value, dtype=np.float32)
        finite = np.isfinite(features)
        if not finite.all():
            t, d = np.argwhere(~finite)[0]
            raise bad(field, f"step {t}, feature {d} is {value[t][d]!r} (not finite in float32)",
                      br.NON_FINITE)
        return features

    def _tokens(self, value, field: str, bad) -> Tuple[str, ...]:
        if not isinstance(value, list):
            raise bad(field, f"expected a list of tokens, got {type(value).__name__}", br.BAD_VALUE)
        for t, token in enumerate(value):
            if not isinstance(token, str) or not token or "\n" in token or "\r" in token:
                raise bad(field, f"token {t} ({token!r}) is not a non-empty one-line string",
                          br.BAD_VALUE)
        return tuple(value)

    def _check_length_field(self, record, length: int, bad) -> None:
        name = self.config.length_field
        if not name or name not in record:
            return
        value = record[name]
        if not _is_int(value):
            raise bad(name, f"expected an integer, got {value!r}", br.BAD_VALUE)
        if value != length:
            raise bad(name, f"says {value} steps but the sequence has {length}",
                      br.LENGTH_MISMATCH)

    def _max_length(self, example: Example, field: str, bad) -> None:
        limit = self.config.max_length
        if not limit or example.length <= limit:
            return
        if self.config.long_sequences == "reject":
            raise bad(field, f"{example.length} steps exceed max_length={limit}", br.TOO_LONG)
        if example.features is not None:
            example.features = example.features[:limit]
        else:
            example.tokens = example.tokens[:limit]
        if example.tags is not None:
            example.tags = example.tags[:limit]
        example.truncated = True

    # Target, weight, id -------------------------------------------------------------------

    def _target(self, record, example: Example, length: int, bad) -> None:
        if self.target_field:
            field = self.target_field
            present = [field] if field in record else []
        else:
            present = [k for k in TARGET_KINDS if k in record]
            if len(present) > 1:
                raise bad("/".join(present), "expected one target field, found "
                          + " and ".join(repr(p) for p in present), br.TARGET_FIELDS)
            field = present[0] if present else "/".join(TARGET_KINDS)
        if not present:
            if self.require_targets:
                raise bad(field, "the record has no target", br.MISSING_TARGET)
            return
        value = record[field]
        kind = self.target_field_kind or (field if field in TARGET_KINDS else
                                          ("labels" if isinstance(value, list) else "label"))
        if self.target_kind and kind != self.target_kind:
            raise bad(field, f"holds a {kind!r} target but the data set's target is "
                      f"{self.target_kind!r}", br.TARGET_FIELDS)
        if kind == "label":
            example.label = self._class(value, field, bad)
        else:
            if not isinstance(value, list):
                raise bad(field, f"expected a list, got {type(value).__name__}", br.BAD_VALUE)
            classes = tuple(self._class(v, field, bad) for v in value)
            if kind == "labels":
                example.labels = tuple(dict.fromkeys(classes))  # duplicates count once
            else:
                if len(classes) != length:
                    raise bad(field, f"has {len(classes)} tags for {length} steps",
                              br.TAGS_LENGTH)
                example.tags = classes

    def _class(self, value, field: str, bad) -> str:
        if not (isinstance(value, str) or _is_int(value)):
            raise bad(field, f"a class must be a string or an integer, got {value!r}",
                      br.BAD_VALUE)
        value = str(value)
        if not value or "\n" in value or "\r" in value:
            raise bad(field, f"class {value!r} is empty or spans lines", br.BAD_VALUE)
        if self.labels is not None and value not in self.labels:
            raise bad(field, f"label {value!r} is not one of the {len(self.labels)} training "
                      "labels", br.UNKNOWN_LABEL)
        return value

    def _weight_and_id(self, record, example: Example, bad) -> None:
        name = self.config.weight_field
        if name and name in record:
            weight = record[name]
            if not _is_number(weight) or not math.isfinite(weight) or weight < 0:
                raise bad(name, f"expected a finite number >= 0, got {weight!r}", br.BAD_VALUE)
            example.weight = float(weight)
        name = self.config.id_field
        if name and name in record:
            value = record[name]
            if not (isinstance(value, str) or _is_int(value)):
                raise bad(name, f"expected a string or an integer, got {value!r}", br.BAD_VALUE)
            example.id = str(value)

    @staticmethod
    def _target_kind_of(example: Example) -> str:
        if example.label is not None:
            return "label"
        return "labels" if example.labels is not None else "tags"


def _input_kind_of(value) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value and isinstance(value[0], list):
        return "features"
    return "tokens"


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _plain_number_grid(steps: list) -> bool:
    """Whether `steps` (a non-empty list) is a list of equally long, non-empty lists of Python
    ints and floats (no bool): the common case, checked at C speed (type and length sets), where
    a step-by-step check took a third of the preparation time of dense data."""
    if set(map(type, steps)) != {list} or len(set(map(len, steps))) != 1 or not steps[0]:
        return False
    return set(map(type, itertools.chain.from_iterable(steps))) <= {float, int}


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
