"""Decoding: a raw record's payload -> a plain dict shaped like a JSON Lines record.

After decoding, every format looks the same to `data.records`: `tokens` is a list of str,
`features` a list of lists of float, `labels` a list, `label`/`weight`/`id`/`length` scalars.
Each format's decoder lives in its module beside its reader and is found through the table in
`data.formats` by the record's `fmt`; only what the format itself says is interpreted there (CSV
cells are strings, SequenceExample values are typed lists). Checking the values against the
contract is `data.records`' job.
"""

from __future__ import annotations

from typing import Any, Dict

from data.formats import input_format
from data.raw_record import FieldNames, RawRecord, bad_record

__all__ = ["FieldNames", "decode"]


def decode(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    """Returns the record as a dict, or raises `BadRecordError` (kind "unparseable").

    A record its reader could not read (`raw.error`, e.g. a line that is not UTF-8) is bad
    whatever its format; the rest go to the decoder of the record's format.
    """
    if raw.error:
        raise bad_record(raw, raw.error)
    return input_format(raw.fmt).decode(raw, names)
