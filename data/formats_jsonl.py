"""JSON Lines: one JSON object per line (`.jsonl`, `.json`, `+.gz`); registered in `data.formats`.

`read` yields one `RawRecord` per non-blank line, numbered by line (1-based), its payload the
line (str). `decode` parses it into the plain dict `data.records` validates.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Iterator

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
        value = json.loads(raw.payload)
    except ValueError as e:
        raise bad_record(raw, f"not valid JSON ({e})") from None
    except RecursionError:
        # The parser recurses once per nesting level; no record of the contract nests deeper
        # than a few levels, so this is a bad record like any other, not a crash.
        raise bad_record(raw, "JSON nested too deeply to parse (more levels than Python's "
                         f"recursion limit of {sys.getrecursionlimit()})") from None
    if not isinstance(value, dict):
        raise bad_record(raw, f"expected a JSON object, got {type(value).__name__}")
    return value
