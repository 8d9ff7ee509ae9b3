"""JSON Lines: one JSON object per line (`.jsonl`, `.json`, `+.gz`); registered in `data.formats`.

`read` yields one `RawRecord` per non-blank line, numbered by line (1-based), its payload the
line (str). `decode` parses it into the plain dict `data.records` validates.

Lines are parsed with orjson (1.8x faster than the standard library on lines of numbers, which
were most of the preparation time); a line orjson refuses is parsed again by `json`, so what the
standard library reads (NaN, Infinity, lone surrogates, deep nesting up to its own limit) reads
as before, and its message names what is wrong. One difference remains: orjson reads an
integer beyond 64 bits as a float, so such a label or id is refused as a float where `json`
would read the integer.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Iterator

import orjson

from data.file_io import TextLines, open_bytes
from data.raw_record import FieldNames, RawRecord, bad_record

NAME = "jsonl"


def read(path: str, csv_delimiter: str = "") -> Iterator[RawRecord]:
    """The file's records in file order; `csv_delimiter` is not used."""
    del csv_delimiter
    # Blank lines hold no record and are passed over; everything else is yielded.
    with open_bytes(path) as stream:
        lines = TextLines(path, stream)
        for line in lines:
            _, error = lines.take_error(lines.number, lines.number)
            if error or line.strip():
                yield RawRecord(path, lines.number, NAME, "" if error else line, error)


def decode(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    """The line's JSON object; `names` is not needed (JSON types its own values)."""
    del names
    try:
        value = orjson.loads(raw.payload)
    except orjson.JSONDecodeError:
        value = _standard_loads(raw)
    if not isinstance(value, dict):
        raise bad_record(raw, f"expected a JSON object, got {type(value).__name__}")
    return value


def _standard_loads(raw: RawRecord) -> Any:
    """The line parsed by `json` (what orjson refused), or the bad record it is."""
    try:
        return json.loads(raw.payload)
    except ValueError as e:
        raise bad_record(raw, f"not valid JSON ({e})") from None
    except RecursionError:
        # The parser recurses once per nesting level; no record of the contract nests deeper
        # than a few levels, so this is a bad record like any other, not a crash.
        raise bad_record(raw, "JSON nested too deeply to parse (more levels than Python's "
                         f"recursion limit of {sys.getrecursionlimit()})") from None
