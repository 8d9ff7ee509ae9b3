"""The input formats: one table, one entry per format.

Each format is an `InputFormat`: the file suffixes that select it, a reader that turns one file
into `RawRecord`s and a decoder that turns one record's payload into the plain dict that
`data.records` validates. `data.readers` picks a file's format by its name (`format_for_path`)
and `data.decode` decodes a record by its `fmt` (`input_format`); neither names a format.
Adding a format is its own module with `read` and `decode` (as `formats_jsonl.py`), plus one
`register_format` call at the bottom of this file. A format module imports `data.raw_record`
and `data.file_io`, never this table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, Tuple

from data.file_io import without_gz
from data.raw_record import FieldNames, RawRecord

UNITS = ("line", "record")


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """One input format.

    name: the format's word, and the `fmt` of the records its reader yields ("jsonl").
    suffixes: the lower-case endings of the file names it reads, before an optional `.gz`
      ((".jsonl", ".json")); matched case-insensitively.
    read(path, csv_delimiter) -> the file's `RawRecord`s in file order; raises
      `DataFileError` for what no skipping can make whole (the file breaks off, is damaged).
      `csv_delimiter` is the user's override ("": the format's own); formats without
      delimiters ignore it.
    decode(raw, names: FieldNames) -> the record as a dict shaped like a JSON Lines record;
      raises `BadRecordError` (`raw_record.bad_record`) for a record it cannot parse.
    unit: how `RawRecord.number` counts: "line" (the 1-based line where the record starts)
      or "record" (the 1-based index of the record in the file).
    """

    name: str
    suffixes: Tuple[str, ...]
    read: Callable[[str, str], Iterator[RawRecord]]
    decode: Callable[[RawRecord, FieldNames], Dict[str, Any]]
    unit: str


INPUT_FORMATS: Dict[str, InputFormat] = {}


def register_format(input_fmt: InputFormat) -> None:
    """Adds a format to the table; a name or suffix already taken, or a malformed entry, raises."""
    if input_fmt.name in INPUT_FORMATS:
        raise ValueError(f"input format {input_fmt.name!r} is already registered")
    if input_fmt.unit not in UNITS:
        raise ValueError(f"input format {input_fmt.name!r}: unit must be one of {UNITS}, "
                         f"got {input_fmt.unit!r}")
    if not input_fmt.suffixes:
        raise ValueError(f"input format {input_fmt.name!r} has no file suffix")
    taken = {s: f.name for f in INPUT_FORMATS.values() for s in f.suffixes}
    for suffix in input_fmt.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower() or suffix == ".gz":
            raise ValueError(f"input format {input_fmt.name!r}: a suffix is a lower-case file "
                             f"name ending such as '.jsonl' (not '.gz'), got {suffix!r}")
        if suffix in taken:
            raise ValueError(f"input format {input_fmt.name!r}: suffix {suffix!r} is already "
                             f"used by {taken[suffix]!r}")
    INPUT_FORMATS[input_fmt.name] = input_fmt


def input_format(name: str) -> InputFormat:
    """The registered format called `name`; an unknown name raises ValueError listing them."""
    try:
        return INPUT_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown input format {name!r}; registered: "
                         f"{sorted(INPUT_FORMATS)}") from None


def suffixes() -> Tuple[str, ...]:
    """Every registered suffix, sorted."""
    return tuple(sorted(s for f in INPUT_FORMATS.values() for s in f.suffixes))


def format_for_path(path: str) -> InputFormat:
    """The format a file name says, by its suffix (a trailing `.gz` is ignored).

    The longest matching suffix wins, so the table's order never matters.

    Raises:
      ValueError: no registered suffix matches (one line naming the file and the suffixes).
    """
    name = without_gz(path).lower()
    matches = [(len(s), f) for f in INPUT_FORMATS.values() for s in f.suffixes
               if name.endswith(s)]
    if not matches:
        raise ValueError(
            f"{path}: unknown file type; expected one of {list(suffixes())} (optionally + .gz)")
    return max(matches, key=lambda match: match[0])[1]


def _register_builtin_formats() -> None:
    from data import formats_csv, formats_jsonl, formats_tfrecord

    register_format(InputFormat(
        name=formats_jsonl.NAME, suffixes=(".jsonl", ".json"), read=formats_jsonl.read,
        decode=formats_jsonl.decode, unit="line"))
    register_format(InputFormat(
        name=formats_csv.NAME, suffixes=(".csv", ".tsv"), read=formats_csv.read,
        decode=formats_csv.decode, unit="line"))
    register_format(InputFormat(
        name=formats_tfrecord.NAME, suffixes=(".tfrecord", ".tfrecords"),
        read=formats_tfrecord.read, decode=formats_tfrecord.decode, unit="record"))


_register_builtin_formats()
