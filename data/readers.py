"""Readers: turn file globs into a stream of raw records, one format at a time.

A reader knows how records are delimited in a file and nothing about their meaning: it yields
`RawRecord(file, number, fmt, payload)` where `payload` is a JSON line (str), a CSV row
`(header, cells)` (two sequences of str) or a serialized
`tf.train.SequenceExample` (bytes). `data.records` turns payloads into examples.

Every access goes through `tf.io.gfile`, so local, `gs://` and `ram://` paths all work. Gzip is
recognised by the `.gz` suffix. Record numbers are 1-based: the line number for JSON Lines and
CSV (the header is line 1), the record index + 1 for TFRecord.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
from typing import Iterator, Sequence, Tuple, Union

import tensorflow as tf

JSONL, CSV, TFRECORD = "jsonl", "csv", "tfrecord"
_SUFFIXES = {".jsonl": JSONL, ".json": JSONL, ".csv": CSV, ".tsv": CSV,
             ".tfrecord": TFRECORD, ".tfrecords": TFRECORD}


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One undecoded record and where it came from."""

    file: str
    number: int
    fmt: str
    payload: Union[str, bytes, tuple]

    @property
    def unit(self) -> str:
        """How `number` counts: "line" for text formats, "record" for TFRecord."""
        return "record" if self.fmt == TFRECORD else "line"


def file_format(path: str) -> str:
    """"jsonl", "csv" or "tfrecord" from the file name (a trailing `.gz` is ignored)."""
    name = path[:-3] if path.endswith(".gz") else path
    for suffix, fmt in _SUFFIXES.items():
        if name.lower().endswith(suffix):
            return fmt
    raise ValueError(
        f"{path}: unknown file type; expected one of {sorted(_SUFFIXES)} (optionally + .gz)")


def expand_patterns(patterns: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Comma-separated globs (or a list of them) -> sorted matching files, in pattern order.

    Raises:
      FileNotFoundError: a pattern matches no file (the message names the pattern).
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")]
    files = []
    for pattern in patterns:
        if not pattern:
            continue
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"data pattern {pattern!r} matches no file")
        files.extend(m for m in matches if m not in files)
    return tuple(files)


def read_file(path: str, csv_delimiter: str = "") -> Iterator[RawRecord]:
    """Yields the raw records of one file, in file order."""
    fmt = file_format(path)
    if fmt == JSONL:
        yield from _read_jsonl(path)
    elif fmt == CSV:
        yield from _read_csv(path, csv_delimiter)
    else:
        yield from _read_tfrecord(path)


def read_records(patterns: Union[str, Sequence[str]], csv_delimiter: str = "") -> Iterator[RawRecord]:
    """Yields the raw records of every file the patterns match, file after file."""
    for path in expand_patterns(patterns):
        yield from read_file(path, csv_delimiter)


@contextlib.contextmanager
def _open_text(path: str):
    if not path.endswith(".gz"):
        with tf.io.gfile.GFile(path, "r") as f:  # decodes UTF-8 itself
            yield f
        return
    with tf.io.gfile.GFile(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
        yield io.TextIOWrapper(stream, encoding="utf-8", newline="")


def _read_jsonl(path: str) -> Iterator[RawRecord]:
    # Blank lines hold no record and are passed over; everything else is yielded.
    with _open_text(path) as f:
        for number, line in enumerate(_lines(path, f), start=1):
            if line.strip():
                yield RawRecord(path, number, JSONL, line)


def _lines(path: str, f):
    try:
        yield from f
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise IOError(f"{path}: cannot be read as UTF-8 text ({e})") from e


def _read_csv(path: str, delimiter: str) -> Iterator[RawRecord]:
    if not delimiter:
        name = path[:-3] if path.endswith(".gz") else path
        delimiter = "\t" if name.lower().endswith(".tsv") else ","
    with _open_text(path) as f:
        reader = csv.reader(_lines(path, f), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        header = tuple(h.strip() for h in header)
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            yield RawRecord(path, start, CSV, (header, row))


def _read_tfrecord(path: str) -> Iterator[RawRecord]:
    compression = "GZIP" if path.endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(path, compression_type=compression)
    number = 0
    try:
        for serialized in dataset.as_numpy_iterator():
            number += 1
            yield RawRecord(path, number, TFRECORD, serialized)
    except tf.errors.OpError as e:
        raise IOError(f"{path}: record {number + 1}: cannot be read ({e.message})") from e
