"""What a format's reader yields and its decoder takes: `RawRecord`, `FieldNames`, `bad_record`.

These sit below the input formats' table (`data.formats`) and every format module, so that a
format module imports only this and `data.file_io`, never the table that lists it.
"""

from __future__ import annotations

import dataclasses
from typing import Union

from data import bad_records as br


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One undecoded record and where it came from.

    file: the path it was read from; number: 1-based, counted in `unit`s; fmt: the name of its
    input format in `data.formats`; payload: whatever that format's decoder takes (a JSON line
    str, a CSV `(header, cells)`, serialized SequenceExample bytes); error: why the record could
    not be read (e.g. not UTF-8), which makes it a bad record whatever its payload.
    """

    file: str
    number: int
    fmt: str
    payload: Union[str, bytes, tuple]
    error: str = ""

    @property
    def unit(self) -> str:
        """How `number` counts: "line" or "record", as the record's input format says."""
        # The table imports the format modules that build records, so it is looked up here, at
        # call time (only when a bad record is reported), not imported with this module.
        from data.formats import input_format
        return input_format(self.fmt).unit


class FieldNames:
    """How a decoder treats field names it cannot type from the format alone.

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


def bad_record(raw: RawRecord, reason: str, field: str = br.WHOLE_RECORD,
               kind: str = br.UNPARSEABLE) -> br.BadRecordError:
    """The `BadRecordError` for `raw` (by default: unparseable as a whole), to be raised."""
    return br.BadRecordError(raw.file, raw.number, field, reason, kind, raw.unit)
