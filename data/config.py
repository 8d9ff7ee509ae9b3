"""`DataConfig`: every choice the data package makes, one field per command-line flag.

The trainer turns each field into a flag (`train_data` -> `--train-data`), so names are stable
and every default works: with no flags at all the bundled JapaneseVowels data set is used.
A field whose value changes what `data.prepare` writes is declared with `_prepares(default)`:
that mark alone puts it into the preparation's fingerprint, which a resume must match.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Tuple

BUNDLED_DATASET = "japanese_vowels"

LONG_SEQUENCE_POLICIES = ("truncate", "reject")
# eval_fraction=-1: hold out this share of the training records, but only from sets of at
# least this many records (then the hold-out has 50 or more). On the small sets of the
# development suite a 10% hold-out (3 of 28 sequences) picked the best checkpoint at step 32
# of 1,200, and training on all of them with the last weights scored higher in train-split CV
# (bench/real_data_results.md).
AUTO_EVAL_FRACTION = 0.1
AUTO_EVAL_MIN_RECORDS = 500
# Field metadata key: the field changes what `data.prepare` writes (the prepared records,
# vocabulary or statistics), so a model dir prepared with another value cannot be reused.
PREPARES_DATA = "prepares_data"


def _prepares(default):
    """A field whose value is part of the preparation's fingerprint (see `PREPARES_DATA`)."""
    return dataclasses.field(default=default, metadata={PREPARES_DATA: True})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data are and how they are read, validated, split and batched.

    Attributes:
      train_data: comma-separated file globs; "" means the bundled JapaneseVowels train file.
      eval_data: comma-separated globs; "" holds out `eval_fraction` of the training records,
        drawn at random with the run's seed (independent of file order).
      test_data: comma-separated globs; "" means the bundled test file when `train_data` is the
        bundled one, else no test split.
      eval_fraction: share of training records held out for evaluation (early stopping and the
        best checkpoint) when `eval_data` is ""; -1 = auto: `AUTO_EVAL_FRACTION` when the
        training files hold at least `AUTO_EVAL_MIN_RECORDS` records, else 0: a small set
        trains on every record for the step budget and keeps its last weights, since a
        hold-out of a few sequences picks checkpoints by noise (stated in the log).
      input_field: record field holding the sequence; "" finds whichever of
        tokens/text/features is present. A custom name may carry its kind: "sentence:tokens"
        (without one, a string is text and a list of lists is features).
      target_field: record field holding the target; "" finds whichever of
        label/labels/tags is present. A custom name may carry its kind: "ner:tags".
      weight_field, id_field, length_field: names of the optional fields.
      labels: explicit comma-separated label list (its order gives the class ids); "" uses the
        sorted set of labels found in the training files.
      batch_size: examples per batch.
      bucketing: batch training examples of similar length together (evaluation passes too:
        each example once, in length buckets).
      num_buckets: length buckets, with boundaries at the training length deciles (at most
        10). Narrow buckets keep padding low: on lengths U[20, 200], 4 buckets left 17% of
        each batch padding, 10 buckets 7%, and training ran 11% faster.
      max_length: longest sequence kept (0: no limit).
      long_sequences: "truncate" (keep the first `max_length` steps, counted) or "reject"
        (a bad record).
      skip_bad_records: skip bad records (counted per reason) instead of stopping.
      max_skipped_fraction: the run stops anyway when a split skips a larger share than this.
      shuffle_buffer: records in the training shuffle buffer.
      cache: keep parsed examples in memory after the first epoch, when the split's prepared
        files make at most `cache_max_mb` (memory: about the parsed split). The trainer's
        checkpoints do not hold data (the step is the data position), so this costs no
        checkpoint space.
      cache_max_mb: the largest split (its prepared files, MB: uncompressed, so about the
        memory the cache takes) that `cache` keeps in memory; larger splits are read from disk
        every epoch (logged). 0: no limit.
      deterministic: keep the tf.data order fixed; needed for an exact resume (the trainer
        rebuilds the order and skips to the step).
      num_oov_buckets: hash buckets for out-of-vocabulary tokens (at least 1).
      min_token_count: tokens seen fewer times in the training split are out of vocabulary.
      max_vocab_size: keep at most this many tokens, the most frequent first (0: no cap).
      lowercase: lower-case `text` before splitting it into tokens.
      csv_delimiter: "" picks by suffix (`,` for .csv, tab for .tsv).
    """

    train_data: str = _prepares("")
    eval_data: str = _prepares("")
    test_data: str = _prepares("")
    eval_fraction: float = _prepares(-1.0)
    input_field: str = _prepares("")
    target_field: str = _prepares("")
    weight_field: str = _prepares("weight")
    id_field: str = _prepares("id")
    length_field: str = _prepares("length")
    labels: str = _prepares("")
    batch_size: int = 32
    bucketing: bool = True
    num_buckets: int = 10
    max_length: int = _prepares(0)
    long_sequences: str = _prepares("truncate")
    skip_bad_records: bool = False
    max_skipped_fraction: float = 0.01
    shuffle_buffer: int = 10000
    cache: bool = True
    cache_max_mb: float = 128.0
    deterministic: bool = True
    num_oov_buckets: int = _prepares(1)
    min_token_count: int = _prepares(1)
    max_vocab_size: int = _prepares(0)
    lowercase: bool = _prepares(True)
    csv_delimiter: str = _prepares("")

    def __post_init__(self):
        if not (0.0 <= self.eval_fraction < 1.0 or self.eval_fraction == -1.0):
            raise ValueError(f"eval_fraction must be in [0, 1) or -1 (auto), got {self.eval_fraction}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {self.num_buckets}")
        if self.max_length < 0:
            raise ValueError(f"max_length must be >= 0 (0: no limit), got {self.max_length}")
        if self.long_sequences not in LONG_SEQUENCE_POLICIES:
            raise ValueError(
                f"long_sequences must be one of {LONG_SEQUENCE_POLICIES}, got {self.long_sequences!r}")
        if not 0.0 <= self.max_skipped_fraction <= 1.0:
            raise ValueError(
                f"max_skipped_fraction must be in [0, 1], got {self.max_skipped_fraction}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if self.cache_max_mb < 0:
            raise ValueError(f"cache_max_mb must be >= 0 (0: no limit), got {self.cache_max_mb}")
        if self.num_oov_buckets < 1:
            raise ValueError(f"num_oov_buckets must be >= 1, got {self.num_oov_buckets}")
        if self.min_token_count < 1:
            raise ValueError(f"min_token_count must be >= 1, got {self.min_token_count}")
        if self.max_vocab_size < 0:
            raise ValueError(f"max_vocab_size must be >= 0 (0: no cap), got {self.max_vocab_size}")
        if len(self.csv_delimiter) > 1:
            raise ValueError(f"csv_delimiter must be one character or '', got {self.csv_delimiter!r}")

    @property
    def label_list(self) -> Tuple[str, ...]:
        """The explicit labels, in the order given (empty when `labels` is "")."""
        return tuple(x.strip() for x in self.labels.split(",") if x.strip())

    def resolved_train_data(self) -> str:
        return self.train_data or bundled_paths()["train"]

    def resolved_eval_data(self) -> str:
        return self.eval_data

    def resolved_test_data(self) -> str:
        if self.test_data:
            return self.test_data
        return bundled_paths()["test"] if not self.train_data else ""


def preparation_fields() -> Tuple[str, ...]:
    """The names of the `DataConfig` fields marked `PREPARES_DATA`, in field order."""
    return tuple(f.name for f in dataclasses.fields(DataConfig) if f.metadata.get(PREPARES_DATA))


def split_patterns(patterns: str) -> Tuple[str, ...]:
    """'a/*.jsonl, b.csv' -> ('a/*.jsonl', 'b.csv'); empty entries are dropped."""
    return tuple(p.strip() for p in patterns.split(",") if p.strip())


def bundled_paths(name: str = BUNDLED_DATASET) -> dict:
    """Paths of a data set shipped inside the package: {"train": path, "test": path}.

    Package data is installed next to this file, so a local path is the right thing here (the
    one place in `data/` that computes one).
    """
    folder = pathlib.Path(__file__).resolve().parent / "datasets" / name
    return {"train": str(folder / "train.jsonl.gz"), "test": str(folder / "test.jsonl.gz")}
