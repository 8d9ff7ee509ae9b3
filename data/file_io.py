"""Bytes and text lines out of a data file, shared by the input formats' readers.

Every access goes through `tf.io.gfile`, so local, `gs://` and `ram://` paths all work. Gzip is
recognised by the `.gz` suffix. Text is read as bytes and decoded one line at a time, so a line
that is not UTF-8 becomes one bad record instead of ending the file; a gzip stream that breaks
off raises `DataFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import zlib
from typing import Dict, Iterator, Tuple

import tensorflow as tf

from data import bad_records as br

GZIP_MAGIC = b"\x1f\x8b"


def tfrecord_compression(path: str) -> str:
    """The `TFRecordDataset` compression_type of a TFRecord file: "GZIP" for a `.gz` name, else ""."""
    return "GZIP" if path.endswith(".gz") else ""


def without_gz(path: str) -> str:
    """The path without a trailing `.gz` (the name that says the format)."""
    return path[:-3] if path.endswith(".gz") else path


@contextlib.contextmanager
def open_bytes(path: str):
    """The file's bytes, gunzipped when the name ends with `.gz`."""
    with tf.io.gfile.GFile(path, "rb") as raw:
        if not path.endswith(".gz"):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream


# TF's error messages carry graph-function names and op tags that mean nothing to a user.
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\]|\bname:\s*$")


def tf_reason(path: str, error: tf.errors.OpError) -> str:
    """A TensorFlow I/O error in a few words, without TF's noise or the repeated path."""
    if isinstance(error, tf.errors.PermissionDeniedError):
        return "permission denied"
    if isinstance(error, tf.errors.NotFoundError):
        return "not found"
    message = " ".join(_TF_NOISE.sub(" ", error.message or "").split())
    message = message.replace(f"{path}; ", "").strip(" ;:")
    return message or type(error).__name__


class TextLines:
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
    if number == 1 and line.startswith(GZIP_MAGIC):
        reason += "; the file looks gzip-compressed: give it a .gz name"
    return reason


def _gzip_failure(error: Exception, lines_read: int) -> str:
    """Why a gzip stream stopped, in words; the lines before it were read and checked."""
    if isinstance(error, gzip.BadGzipFile) and "Not a gzipped file" in str(error):
        return f"not gzip data, although the name ends with .gz ({error})"
    where = f"after line {lines_read}" if lines_read else "before its first line"
    return f"truncated or damaged gzip file: it breaks off {where} ({error})"
