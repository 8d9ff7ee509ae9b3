"""`data/`: everything between the user's files and the batches a model trains on.

What lives here, one job per module:
  config.py      `DataConfig` (one flag per field) and the bundled data set's paths
  spec.py        `DataSpec`: kinds, labels, vocabulary, statistics; saved as model-dir assets
  readers.py     file globs -> raw records, each file read by the format its suffix names
  decode.py      raw record -> plain dict, by its format's decoder
  formats.py     the input formats' table: `InputFormat` (suffixes, reader, decoder, unit)
  formats_*.py   one input format each (jsonl, csv: CSV/TSV, tfrecord): its reader and decoder
  raw_record.py  `RawRecord`, `FieldNames`: what a reader yields and a decoder is told
  file_io.py     bytes and UTF-8 lines out of a file (gzip by suffix) for the readers
  records.py     plain dict -> validated `Example`, or `BadRecordError`
  bad_records.py `BadRecordError`, `DataFileError`, bad-record kinds, the per-split skip tally
  tokenizer.py   `tokenize` (core TF string ops) and the token -> id lookup
  stats.py       training-split statistics for the spec
  canonical.py   the prepared-shard format (`tf.train.SequenceExample`)
  prepare.py     `prepare_data` / `prepare_files`: sources -> spec + prepared shards + manifest
  pipeline.py    `make_dataset`: prepared shards -> padded, bucketed tf.data batches
The input contract is in data/README.md. A new input format is one `formats_<name>.py` with
`read` and `decode`, plus one `register_format` call at the bottom of formats.py.

Imports: TensorFlow, numpy and the standard library only; never `models`, `trainer` or `export`
(data flows data -> models -> trainer -> export). All file access goes through `tf.io.gfile`.
"""

import importlib

# Loaded on first use (PEP 562), so that `data.config` (the flags) imports without TensorFlow:
# `python -m trainer.task --help` stays fast.
_EXPORTS = {
    "data.bad_records": ("BadRecordError", "DataError", "DataFileError", "TooManyBadRecordsError"),
    "data.config": ("DataConfig", "bundled_paths"),
    "data.pipeline": ("make_dataset",),
    "data.prepare": ("PreparedData", "SplitInfo", "prepare_data", "prepare_files"),
    "data.spec": ("DataSpec",),
    "data.tokenizer": ("make_token_lookup", "tokenize"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value
