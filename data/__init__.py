"""`data/`: everything between the user's files and the batches a model trains on.

What lives here, one job per module:
  config.py      `DataConfig` (one flag per field) and the bundled data set's paths
  spec.py        `DataSpec`: kinds, labels, vocabulary, statistics; saved as model-dir assets
  readers.py     file globs -> raw records (JSON Lines, CSV/TSV, TFRecord; gzip by suffix)
  decode.py      raw record -> plain dict, whatever the format
  records.py     plain dict -> validated `Example`, or `BadRecordError`
  bad_records.py `BadRecordError`, `DataFileError`, bad-record kinds, the per-split skip tally
  tokenizer.py   `tokenize` (core TF string ops) and the token -> id lookup
  stats.py       training-split statistics for the spec
  canonical.py   the prepared-shard format (`tf.train.SequenceExample`)
  prepare.py     `prepare_data` / `prepare_files`: sources -> spec + prepared shards + manifest
  pipeline.py    `make_dataset`: prepared shards -> padded, bucketed tf.data batches
The input contract is in data/README.md.

Imports: TensorFlow, numpy and the standard library only; never `models`, `trainer` or `export`
(data flows data -> models -> trainer -> export). All file access goes through `tf.io.gfile`.
"""

from data.bad_records import BadRecordError, DataError, DataFileError, TooManyBadRecordsError
from data.config import DataConfig, bundled_paths
from data.pipeline import make_dataset
from data.prepare import PreparedData, SplitInfo, prepare_data, prepare_files
from data.spec import DataSpec
from data.tokenizer import make_token_lookup, tokenize

__all__ = [
    "BadRecordError", "DataError", "DataFileError", "TooManyBadRecordsError", "DataConfig",
    "bundled_paths", "make_dataset",
    "PreparedData", "SplitInfo", "prepare_data", "prepare_files", "DataSpec",
    "make_token_lookup", "tokenize",
]
