"""Bad input: the errors that name file, record and field, and the per-split skip tally.

By default the first bad record stops the run with a `BadRecordError`. A file that cannot be read
as a whole (a directory, no read permission, a truncated gzip, a corrupt TFRecord, CSV quoting that
swallows rows) stops it with a `DataFileError` even with skipping on: how many records it held is
unknown, so no skipped share could be counted. With
`DataConfig.skip_bad_records` a `SkipTally` counts skipped records per kind instead, and stops
the run with a `TooManyBadRecordsError` when a split's skipped share exceeds
`DataConfig.max_skipped_fraction`. The counts end up in the prepared-data manifest so the trainer
can log them and write them to its summaries.
"""

from __future__ import annotations

import collections
import logging
from typing import Dict

logger = logging.getLogger(__name__)

# Kinds of bad record; the keys of the skip counts.
UNPARSEABLE = "unparseable"          # not JSON / wrong CSV width / not a SequenceExample
INPUT_FIELDS = "input_fields"        # both or neither input field, or another input kind
TARGET_FIELDS = "target_fields"      # several target fields, or another target kind
MISSING_TARGET = "missing_target"    # no target in a file that needs one
EMPTY_SEQUENCE = "empty_sequence"    # T == 0
RAGGED_FEATURES = "ragged_features"  # steps of different widths
FEATURE_WIDTH = "feature_width"      # width differs from the spec's D
NON_FINITE = "non_finite"            # NaN or Inf in features
LENGTH_MISMATCH = "length_mismatch"  # `length` field != T
UNKNOWN_LABEL = "unknown_label"      # label outside the training label set
TAGS_LENGTH = "tags_length"          # len(tags) != T
TOO_LONG = "too_long"                # T > max_length with long_sequences="reject"
BAD_VALUE = "bad_value"              # a field of the wrong type or out of range

KINDS = (UNPARSEABLE, INPUT_FIELDS, TARGET_FIELDS, MISSING_TARGET, EMPTY_SEQUENCE,
         RAGGED_FEATURES, FEATURE_WIDTH, NON_FINITE, LENGTH_MISMATCH, UNKNOWN_LABEL, TAGS_LENGTH,
         TOO_LONG, BAD_VALUE)

WHOLE_RECORD = "<record>"  # the `field` of an error about the record as a whole


class DataError(ValueError):
    """Base of the errors about the user's data: a message of one line that names the file."""


class BadRecordError(DataError):
    """A record that breaks the input contract.

    Attributes:
      file: the file it came from.
      record_number: 1-based line (text formats) or record (TFRecord) number.
      field: the offending field, or "<record>" when the record as a whole is unreadable.
      reason: what is wrong, in words.
      kind: one of `KINDS`.
      unit: "line" or "record", how `record_number` counts.
    """

    def __init__(self, file: str, record_number: int, field: str, reason: str,
                 kind: str = BAD_VALUE, unit: str = "line"):
        self.file, self.record_number, self.field = file, record_number, field
        self.reason, self.kind, self.unit = reason, kind, unit
        super().__init__(f"{file}: {unit} {record_number}: field {field!r}: {reason} [{kind}]")

    def __reduce__(self):
        return (type(self), (self.file, self.record_number, self.field, self.reason, self.kind,
                             self.unit))


class TooManyBadRecordsError(DataError):
    """A split skipped more records than `max_skipped_fraction` allows."""


class DataFileError(DataError):
    """A data file that cannot be read to its end; never skipped.

    Attributes:
      file: the file.
      reason: what is wrong, in words (one line).
      line: the 1-based line where it went wrong (text formats), 0 when not known or not a line.
    """

    def __init__(self, file: str, reason: str, line: int = 0):
        self.file, self.reason, self.line = file, reason, line
        where = f"line {line}: " if line else ""
        super().__init__(f"{file}: {where}{reason}")

    def __reduce__(self):
        return (type(self), (self.file, self.reason, self.line))


class SkipTally:
    """Counts good and skipped records of one split and enforces the skip policy.

    Args:
      split: split name for messages ("train", "eval", ...).
      skip: skip bad records (True) or raise the first one (False).
      max_fraction: largest allowed skipped / (skipped + kept) share.
      log_first: bad records logged one by one before only counting.
    """

    def __init__(self, split: str, skip: bool, max_fraction: float, log_first: int = 10):
        self.split, self.skip, self.max_fraction, self.log_first = split, skip, max_fraction, log_first
        self.kept = 0
        self.skipped: Dict[str, int] = collections.Counter()
        self.first_error: Dict[str, str] = {}

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def keep(self) -> None:
        self.kept += 1

    def bad(self, error: BadRecordError) -> None:
        """Raises `error`, or counts it when skipping is on."""
        if not self.skip:
            raise error
        if self.num_skipped < self.log_first:
            logger.warning("%s: skipping bad record: %s", self.split, error)
        self.skipped[error.kind] += 1
        self.first_error.setdefault(error.kind, str(error))

    def check(self) -> None:
        """Raises `TooManyBadRecordsError` when the skipped share is over the limit."""
        total = self.kept + self.num_skipped
        if self.num_skipped:
            logger.warning("%s: skipped %d of %d records: %s", self.split, self.num_skipped, total,
                           dict(sorted(self.skipped.items())))
        if total and self.num_skipped / total > self.max_fraction:
            examples = "; ".join(self.first_error[k] for k in sorted(self.first_error))
            raise TooManyBadRecordsError(
                f"{self.split}: skipped {self.num_skipped} of {total} records "
                f"({self.num_skipped / total:.2%} > max_skipped_fraction={self.max_fraction:.2%}); "
                f"counts per kind: {dict(sorted(self.skipped.items()))}; first of each: {examples}")

    def counts(self) -> Dict[str, int]:
        return dict(sorted(self.skipped.items()))
