"""CSV/TSV: a header row, then one record per row (`.csv`, `.tsv`, `+.gz`); see `data.formats`.

`read` yields `RawRecord`s numbered by the line where their row starts (the header is line 1),
their payload `(header, cells)` (two sequences of str). The delimiter is `csv_delimiter`, or a
tab for `.tsv` and a comma otherwise. `decode` types the cells by `FieldNames`.
"""

from __future__ import annotations

import csv
from typing import Any, Dict, Iterator

from data import bad_records as br
from data.file_io import TextLines, open_bytes, without_gz
from data.raw_record import FieldNames, RawRecord, bad_record

NAME = "csv"


def read(path: str, csv_delimiter: str = "") -> Iterator[RawRecord]:
    """The file's rows after the header, in file order; blank rows are passed over.

    Raises:
      DataFileError: the header row is not valid CSV or not UTF-8, or a quoted field runs over
        line ends into a broken row (see `_check_quotes`).
    """
    delimiter = csv_delimiter or ("\t" if without_gz(path).lower().endswith(".tsv") else ",")
    with open_bytes(path) as stream:
        lines = TextLines(path, stream)
        # strict: a quote still open at the end of the file is an error, not a last field that
        # silently holds every row after the quote.
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise br.DataFileError(path, f"the header row is not valid CSV ({e})", line=1) from None
        _, error = lines.take_error(1, lines.number)
        if error:
            raise br.DataFileError(path, f"the header row is {error}", line=1)
        header = tuple(h.strip() for h in header)
        while True:
            start = lines.number + 1  # a quoted field may carry the row over several lines
            try:
                row, error = next(reader), ""
            except StopIteration:
                return
            except csv.Error as e:  # the reader goes on with the next line
                row, error = [], f"not valid CSV ({e})"
            _check_quotes(path, header, row, error, start, lines)
            line, not_utf8 = lines.take_error(start, lines.number)
            if not_utf8:
                error = (f"line {line}: " if line != start else "") + not_utf8
            if error or any(cell.strip() for cell in row):
                yield RawRecord(path, start, NAME, (header, row), error)


def _check_quotes(path: str, header, row, error: str, start: int, lines: TextLines) -> None:
    """Raises `DataFileError` for a broken row that spans several lines.

    Such a row is an unbalanced quote: the quoted field swallowed every line up to where the
    parser stopped, and those lines may be good rows. Counting it as one skipped record would
    lose them silently, and where they begin and end cannot be known, so the run stops even
    with skipping on and names the line where the quote opened. A row that spans lines and
    parses into as many cells as the header is a legitimate quoted field with line breaks.
    """
    end = lines.number
    if end == start or (not error and len(row) == len(header)):
        return
    if lines.finished:
        raise br.DataFileError(path, f"a quoted field opened on this line is never closed: it "
                               f"swallows every line to the end of the file (line {end}); fix "
                               "the quoting", line=start)
    what = error or f"{len(row)} cells, the header has {len(header)}"
    raise br.DataFileError(path, f"a quoted field opened on this line runs over the line ends "
                           f"to line {end} and the row it makes is broken ({what}): an "
                           "unbalanced quote that swallows the rows between; fix the quoting",
                           line=start)


def decode(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    """The row as {header name: typed cell}; an empty cell is an absent field."""
    header, cells = raw.payload
    if len(cells) != len(header):
        raise bad_record(raw, f"row has {len(cells)} cells, the header has {len(header)}")
    record = {}
    for name, cell in zip(header, cells):
        if name == "features":
            raise bad_record(raw, "dense feature sequences are not carried in CSV; use JSON "
                             "Lines or TFRecord", field=name, kind=br.BAD_VALUE)
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
                raise bad_record(raw, f"expected a number, got {cell!r}", field=name,
                                 kind=br.BAD_VALUE) from None
        else:
            record[name] = cell
    return record
