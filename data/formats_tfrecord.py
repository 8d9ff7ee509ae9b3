"""TFRecord of `tf.train.SequenceExample` (`.tfrecord`, `.tfrecords`, `+.gz`); see `data.formats`.

`read` yields one `RawRecord` per record, numbered by record (1-based), its payload the
serialized SequenceExample (bytes), and checks that the records read are all the file holds.
`decode` turns the context into scalars (lists for `FieldNames.lists`) and each feature list
into one value, or one float list, per step.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Dict, Iterator

import tensorflow as tf
from google.protobuf.message import DecodeError

from data import bad_records as br
from data.file_io import GZIP_MAGIC, open_bytes, tf_reason, tfrecord_compression
from data.raw_record import FieldNames, RawRecord, bad_record

NAME = "tfrecord"
_FRAMING = 16  # bytes per record: uint64 length, its CRC32C, the data's CRC32C


def read(path: str, csv_delimiter: str = "") -> Iterator[RawRecord]:
    """The file's records in file order; `csv_delimiter` is not used.

    Raises:
      DataFileError: the file is corrupt, or ends inside a record (also when gzip-compressed).
    """
    del csv_delimiter
    dataset = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path))
    number = offset = 0
    try:
        for serialized in dataset.as_numpy_iterator():
            number += 1
            offset += len(serialized) + _FRAMING
            yield RawRecord(path, number, NAME, serialized)
    except tf.errors.DataLossError as e:
        raise br.DataFileError(path, _not_tfrecord(path, tf_reason(path, e), number)) from None
    _check_complete(path, offset, number)


def _check_complete(path: str, offset: int, number: int) -> None:
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
        with open_bytes(path) as stream:
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
            return f.read(2) == GZIP_MAGIC
    except tf.errors.OpError:
        return False


def decode(raw: RawRecord, names: FieldNames) -> Dict[str, Any]:
    """The SequenceExample as a dict: context values, then one entry per feature list."""
    try:
        example = tf.train.SequenceExample.FromString(raw.payload)
    except DecodeError as e:
        raise bad_record(raw, f"not a tf.train.SequenceExample ({e})") from None
    record: Dict[str, Any] = {}
    for name, feature in example.context.feature.items():
        _, values = _feature_values(feature)
        values = [_as_text(raw, name, v) for v in values]
        if name in names.lists:
            record[name] = values
        elif len(values) == 1:
            record[name] = values[0]
        elif values:
            record[name] = values
    for name, feature_list in example.feature_lists.feature_list.items():
        steps = []
        for t, feature in enumerate(feature_list.feature):
            kind, values = _feature_values(feature)
            if kind == "float_list":
                steps.append(values)
            elif len(values) == 1:
                steps.append(_as_text(raw, name, values[0]))
            else:
                raise bad_record(raw, f"step {t} holds {len(values)} values, expected one",
                                 field=name, kind=br.BAD_VALUE)
        record[name] = steps
    return record


def _feature_values(feature: tf.train.Feature):
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None, []
    return kind, list(getattr(feature, kind).value)


def _as_text(raw: RawRecord, field: str, value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_record(raw, f"bytes {value[:20]!r} are not UTF-8", field=field) from None
    return value
