"""Readers: turn file globs into a stream of raw records, one format at a time.

A reader knows how records are delimited in a file and nothing about their meaning: it yields
`RawRecord(file, number, fmt, payload)` where `payload` is a JSON line (str), a CSV row
`(header, cells)` (two sequences of str) or a serialized
`tf.train.SequenceExample` (bytes). `data.records` turns payloads into examples.

Every access goes through `tf.io.gfile`, so local, `gs://` and `ram://` paths all work. Gzip is
recognised by the `.gz` suffix. Record numbers are 1-based: the line number for JSON Lines and
CSV (the header is line 1), the record index + 1 for TFRecord.

Text files are read as bytes and decoded one line at a time, so a line that is not UTF-8 becomes
one bad record (`RawRecord.error`) instead of ending the file. What no skipping can make whole
raises `DataFileError` naming the file: a directory, a file that cannot be read, a gzip stream or
TFRecord file that breaks off or is corrupt, CSV quoting that swallows rows.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import logging
import re
import zlib
from typing import Dict, Iterator, Sequence, Tuple, Union

import tensorflow as tf

from data import bad_records as br

logger = logging.getLogger(__name__)

JSONL, CSV, TFRECORD = "jsonl", "csv", "tfrecord"
_GZIP_MAGIC = b"\x1f\x8b"
_TFRECORD_FRAMING = 16  # per record: uint64 length, its CRC32C, the data's CRC32C
_SUFFIXES = {".jsonl": JSONL, ".json": JSONL, ".csv": CSV, ".tsv": CSV,
             ".tfrecord": TFRECORD, ".tfrecords": TFRECORD}


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One undecoded record and where it came from."""

    file: str
    number: int
    fmt: str
    payload: Union[str, bytes, tuple]
    error: str = ""  # why the record could not be read (e.g. not UTF-8); it is a bad record

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
    """Yields the raw records of one file, in file order.

    Raises:
      DataFileError: the path is a directory, the file cannot be opened or read, or it breaks
        off or is damaged between records (the message names the file, never TF internals).
    """
    fmt = file_format(path)
    count = 0
    try:
        for raw in _format_records(fmt, path, csv_delimiter):
            count += 1
            yield raw
    except tf.errors.OpError as e:
        _refuse_directory(path)
        raise br.DataFileError(path, f"cannot be read ({_tf_reason(path, e)})") from None
    if not count:
        # A directory reads as an empty text file; it is a mistake in the pattern, not data.
        _refuse_directory(path)
        logger.warning("%s: holds no records", path)


def read_records(patterns: Union[str, Sequence[str]], csv_delimiter: str = "") -> Iterator[RawRecord]:
    """Yields the raw records of every file the patterns match, file after file."""
    for path in expand_patterns(patterns):
        yield from read_file(path, csv_delimiter)


def _format_records(fmt: str, path: str, csv_delimiter: str) -> Iterator[RawRecord]:
    if fmt == JSONL:
        return _read_jsonl(path)
    if fmt == CSV:
        return _read_csv(path, csv_delimiter)
    return _read_tfrecord(path)


def _refuse_directory(path: str) -> None:
    try:
        is_dir = tf.io.gfile.isdir(path)
    except tf.errors.OpError:
        is_dir = False  # the caller reports the read error itself
    if is_dir:
        raise br.DataFileError(path, "is a directory, not a data file; to read the files in "
                               f"it, give a pattern such as {path.rstrip('/')}/*")


# TF's error messages carry graph-function names and op tags that mean nothing to a user.
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\]|\bname:\s*$")


def _tf_reason(path: str, error: tf.errors.OpError) -> str:
    """A TensorFlow I/O error in a few words, without TF's noise or the repeated path."""
    if isinstance(error, tf.errors.PermissionDeniedError):
        return "permission denied"
    if isinstance(error, tf.errors.NotFoundError):
        return "not found"
    message = " ".join(_TF_NOISE.sub(" ", error.message or "").split())
    message = message.replace(f"{path}; ", "").strip(" ;:")
    return message or type(error).__name__


@contextlib.contextmanager
def _open_bytes(path: str):
    """The file's bytes, gunzipped when the name ends with `.gz`."""
    with tf.io.gfile.GFile(path, "rb") as raw:
        if not path.endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream


class _TextLines:
    """The lines of a binary stream as str, decoded as UTF-8 one line at a time.

    A line that is not UTF-8 does not stop the file: it is decoded with surrogate escapes (the
    CSV parser still sees its quotes and delimiters) and its reason is kept until the reader
    takes it with `take_error`, which makes the record that holds the line a bad record.

    Attributes:
      number: lines read so far (the 1-based number of the last line).
      finished: the stream has no more lines.
    """

    def __init__(self, path: str, stream):
        self.path, self._stream = path, stream
        self.number, self.finished = 0, False
        self._errors: Dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._stream:
                self.number += 1
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as e:
                    self._errors[self.number] = _not_utf8(line, e, self.number)
                    yield line.decode("utf-8", "surrogateescape")
        except (EOFError, OSError, zlib.error) as e:
            if not self.path.endswith(".gz"):
                raise
            raise br.DataFileError(self.path, _gzip_failure(e, self.number)) from None
        self.finished = True

    def take_error(self, first: int, last: int) -> Tuple[int, str]:
        """(line, reason) of the first undecodable line in first..last, or (0, ""); forgets them."""
        if not self._errors:  # the common case, once per record
            return 0, ""
        lines = sorted(n for n in self._errors if first <= n <= last)
        found = (lines[0], self._errors[lines[0]]) if lines else (0, "")
        for n in lines:
            del self._errors[n]
        return found


def _not_utf8(line: bytes, error: UnicodeDecodeError, number: int) -> str:
    reason = (f"not UTF-8 text (byte 0x{line[error.start]:02x} at byte {error.start + 1} "
              "of the line)")
    if number == 1 and line.startswith(_GZIP_MAGIC):
        reason += "; the file looks gzip-compressed: give it a .gz name"
    return reason


def _gzip_failure(error: Exception, lines_read: int) -> str:
    """Why a gzip stream stopped, in words; the lines before it were read and checked."""
    if isinstance(error, gzip.BadGzipFile) and "Not a gzipped file" in str(error):
        return f"not gzip data, although the name ends with .gz ({error})"
    where = f"after line {lines_read}" if lines_read else "before its first line"
    return f"truncated or damaged gzip file: it breaks off {where} ({error})"


def _read_jsonl(path: str) -> Iterator[RawRecord]:
    # Blank lines hold no record and are passed over; everything else is yielded.
    with _open_bytes(path) as stream:
        lines = _TextLines(path, stream)
        for line in lines:
            _, error = lines.take_error(lines.number, lines.number)
            if error or line.strip():
                yield RawRecord(path, lines.number, JSONL, "" if error else line, error)


def _read_csv(path: str, delimiter: str) -> Iterator[RawRecord]:
    if not delimiter:
        name = path[:-3] if path.endswith(".gz") else path
        delimiter = "\t" if name.lower().endswith(".tsv") else ","
    with _open_bytes(path) as stream:
        lines = _TextLines(path, stream)
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
                yield RawRecord(path, start, CSV, (header, row), error)


def _check_quotes(path: str, header, row, error: str, start: int, lines: _TextLines) -> None:
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


def _read_tfrecord(path: str) -> Iterator[RawRecord]:
    compression = "GZIP" if path.endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(path, compression_type=compression)
    number = offset = 0
    try:
        for serialized in dataset.as_numpy_iterator():
            number += 1
            offset += len(serialized) + _TFRECORD_FRAMING
            yield RawRecord(path, number, TFRECORD, serialized)
    except tf.errors.DataLossError as e:
        raise br.DataFileError(path, _not_tfrecord(path, _tf_reason(path, e), number)) from None
    _check_tfrecord_complete(path, offset, number)


def _check_tfrecord_complete(path: str, offset: int, number: int) -> None:
    """Raises `DataFileError` unless the records read (`offset` bytes) are all the file holds.

    TensorFlow's reader ends quietly at a record whose header is cut short (and reads junk
    shorter than one header as an empty file); with GZIP it also ends quietly when a truncated
    stream happens to break off between records. Either way records would be lost without a
    word. Uncompressed, the file size must equal `offset`; gzip's trailer holds the gunzipped
    size mod 2**32, and only when that disagrees (a truncated stream, or several gzip members)
    is the file gunzipped again to tell which.
    """
    if path.endswith(".gz"):
        if _gzip_trailer_size(path) == offset % 2**32:
            return
        size = _gunzipped_size(path, number)
    else:
        size = tf.io.gfile.stat(path).length
    if size != offset:
        raise br.DataFileError(path, _not_tfrecord(
            path, f"it ends inside a record ({size - offset} bytes at offset {offset}): truncated, "
            "or not TFRecord data", number))


def _gzip_trailer_size(path: str) -> int:
    """ISIZE from the last 4 bytes of a gzip file (-1 when too short to hold a trailer)."""
    size = tf.io.gfile.stat(path).length
    if size < 18:  # a 10-byte header and an 8-byte trailer
        return -1
    with tf.io.gfile.GFile(path, "rb") as f:
        f.seek(size - 4)
        return int.from_bytes(f.read(4), "little")


def _gunzipped_size(path: str, number: int) -> int:
    total = 0
    try:
        with _open_bytes(path) as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as e:
        raise br.DataFileError(path, _not_tfrecord(path, str(e), number)) from None
    return total


def _not_tfrecord(path: str, what: str, number: int) -> str:
    # TF says "corrupted record at 12": the number is a byte offset (of the gunzipped data).
    what = re.sub(r"(corrupted|truncated) record at (\d+)\S*(?: failed with [^(]*)?",
                  r"\1 record at offset \2", what).strip()
    after = f"after {number} good record{'' if number == 1 else 's'}"
    if path.endswith(".gz"):
        return f"truncated or damaged gzip-compressed TFRecord file: {what}, {after}"
    reason = f"not a valid TFRecord file: {what}, {after}"
    if _starts_with_gzip_magic(path):
        reason += "; the file looks gzip-compressed: give it a .gz name"
    return reason


def _starts_with_gzip_magic(path: str) -> bool:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(2) == _GZIP_MAGIC
    except tf.errors.OpError:
        return False
