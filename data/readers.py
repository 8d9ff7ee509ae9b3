"""Readers: turn file globs into a stream of raw records, each file by its input format.

`read_file` looks a file's format up by its name in `data.formats` (a trailing `.gz` is
ignored) and yields what that format's reader yields: `RawRecord(file, number, fmt, payload)`,
whose `payload` is whatever the format's decoder takes (a JSON line, a CSV `(header, cells)`,
serialized `tf.train.SequenceExample` bytes). `data.decode` turns payloads into dicts. Record
numbers are 1-based and count in the format's unit: lines for JSON Lines and CSV (the header
is line 1), records for TFRecord. Nothing here knows any format by name.

Every access goes through `tf.io.gfile`, so local, `gs://` and `ram://` paths all work. A line
that is not UTF-8 becomes one bad record (`RawRecord.error`) instead of ending the file. What no
skipping can make whole raises `DataFileError` naming the file: a directory, a file that cannot
be read, a gzip stream or TFRecord file that breaks off or is corrupt, CSV quoting that swallows
rows.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence, Tuple, Union

import tensorflow as tf

from data import bad_records as br
from data.file_io import tf_reason
from data.formats import format_for_path
from data.raw_record import RawRecord

logger = logging.getLogger(__name__)


def file_format(path: str) -> str:
    """The name of the file's input format ("jsonl", "csv", "tfrecord", ...) from its name.

    Raises:
      ValueError: no registered format has the file's suffix (see `formats.format_for_path`).
    """
    return format_for_path(path).name


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
    """Yields the raw records of one file, in file order.

    Raises:
      DataFileError: the path is a directory, the file cannot be opened or read, or it breaks
        off or is damaged between records (the message names the file, never TF internals).
    """
    read = format_for_path(path).read
    count = 0
    try:
        for raw in read(path, csv_delimiter):
            count += 1
            yield raw
    except tf.errors.OpError as e:
        _refuse_directory(path)
        raise br.DataFileError(path, f"cannot be read ({tf_reason(path, e)})") from None
    if not count:
        # A directory reads as an empty text file; it is a mistake in the pattern, not data.
        _refuse_directory(path)
        logger.warning("%s: holds no records", path)


def read_records(patterns: Union[str, Sequence[str]], csv_delimiter: str = "") -> Iterator[RawRecord]:
    """Yields the raw records of every file the patterns match, file after file."""
    for path in expand_patterns(patterns):
        yield from read_file(path, csv_delimiter)


def _refuse_directory(path: str) -> None:
    try:
        is_dir = tf.io.gfile.isdir(path)
    except tf.errors.OpError:
        is_dir = False  # the caller reports the read error itself
    if is_dir:
        raise br.DataFileError(path, "is a directory, not a data file; to read the files in "
                               f"it, give a pattern such as {path.rstrip('/')}/*")
