"""Preparation: source files -> validated, canonical shards + `DataSpec` in the model dir.

`prepare_data` runs once per model directory. It reads the training files in one streaming
pass, validates every record, holds out a seeded random eval share (when no eval files are
given), fixes the `DataSpec` from the training split, saves it as assets, and writes

    <model_dir>/prepared/{train,eval,test}-NNNNN-of-NNNNN.tfrecord
    <model_dir>/prepared/manifest.json   (counts, skips, truncations, source files, config)

A later run with the same model dir (a resume) finds the manifest and spec and reuses them
without touching the source files. `prepare_files` prepares prediction or extra evaluation
files against an existing spec.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from data import bad_records as br
from data import canonical
from data.config import AUTO_EVAL_FRACTION, AUTO_EVAL_MIN_RECORDS, DataConfig, preparation_fields, split_patterns
from data.readers import expand_patterns, read_file
from data.records import Example, RecordValidator
from data.spec import DataSpec
from data.stats import TrainStats
from data.tokenizer import build_vocab

logger = logging.getLogger(__name__)

PREPARED_DIR = "prepared"
MANIFEST_FILE = "manifest.json"
RECORDS_PER_SHARD = 10000
# Prepared shards are not compressed: gzip (level 1, the fastest) took 1.4 s of a 6.8 s
# preparation of the throughput workload to save a quarter of the size (0.755 of it), and every
# training epoch that is not cached would pay to decompress it again.
MANIFEST_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """One prepared split.

    Attributes:
      files: the prepared shard paths (feed them to `data.pipeline.make_dataset`).
      num_records: valid records written.
      skipped: bad records skipped, per kind (empty unless `skip_bad_records`).
      truncated: records cut to `max_length`.
      has_targets: every record carries a target (always True for train/eval/test).
      sources: the source files read.
    """

    files: Tuple[str, ...]
    num_records: int
    skipped: Dict[str, int] = dataclasses.field(default_factory=dict)
    truncated: int = 0
    has_targets: bool = True
    sources: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """What `prepare_data` returns: the spec and the prepared splits ("train", "eval", "test").

    "eval" is absent when there are no eval files and `eval_fraction` is 0; "test" when there
    are no test files. `reused` is True when an earlier run's preparation was loaded.
    """

    spec: DataSpec
    splits: Dict[str, SplitInfo]
    reused: bool = False


def prepared_dir(model_dir: str) -> str:
    return tf.io.gfile.join(model_dir, PREPARED_DIR)


def prepare_data(config: DataConfig, model_dir: str, seed: int,
                 records_per_shard: int = RECORDS_PER_SHARD) -> PreparedData:
    """Prepares train/eval/test for `model_dir`, or reuses an earlier preparation.

    Args:
      config: what to read and how.
      model_dir: the run's directory (local, gs://, ram://...).
      seed: draws the eval hold-out.
      records_per_shard: records per prepared shard file.

    Raises:
      BadRecordError: a bad record with `skip_bad_records` off.
      TooManyBadRecordsError: a split skipped more than `max_skipped_fraction`.
      DataFileError: a file that cannot be read to its end (skipping or not).
      FileNotFoundError: a data pattern matches nothing.
      ValueError: no valid training records, or `model_dir` was prepared with other settings.
    """
    out_dir = prepared_dir(model_dir)
    manifest_path = tf.io.gfile.join(out_dir, MANIFEST_FILE)
    settings = _settings(config, seed)
    spec = DataSpec.load(model_dir)
    if spec is not None and tf.io.gfile.exists(manifest_path):
        return _reuse(spec, manifest_path, out_dir, settings)

    tf.io.gfile.makedirs(out_dir)
    spec, splits = _prepare_train(config, out_dir, seed, records_per_shard)
    spec.save(model_dir)
    for name, patterns in (("eval", config.resolved_eval_data()),
                           ("test", config.resolved_test_data())):
        if patterns:
            splits[name] = prepare_files(patterns, spec, config, out_dir, split=name,
                                         require_targets=True, records_per_shard=records_per_shard)
    _write_manifest(manifest_path, out_dir, splits, settings)
    for name, info in splits.items():
        logger.info("prepared %s: %d records in %d shards (skipped %s, truncated %d)", name,
                    info.num_records, len(info.files), info.skipped or 0, info.truncated)
    return PreparedData(spec=spec, splits=splits)


def prepare_files(patterns: str, spec: DataSpec, config: DataConfig, output_dir: str, *,
                  split: str = "predict", require_targets: bool = False,
                  records_per_shard: int = RECORDS_PER_SHARD) -> SplitInfo:
    """Validates files against `spec` and writes `<output_dir>/<split>-NNNNN-of-NNNNN.tfrecord`.

    Prediction files may omit targets (`require_targets=False`); a target that is present is
    still checked against the spec's labels. Use `SplitInfo.has_targets` to decide whether
    `make_dataset` should read targets.
    """
    validator = RecordValidator(config, input_kind=spec.input_kind, target_kind=spec.target_kind,
                                feature_dim=spec.feature_dim, labels=spec.labels,
                                require_targets=require_targets)
    tf.io.gfile.makedirs(output_dir)
    tally = br.SkipTally(split, config.skip_bad_records, config.max_skipped_fraction)
    sources = expand_patterns(split_patterns(patterns))
    staging = _staging_path(output_dir, split)
    count = {"n": 0, "truncated": 0, "targets": 0}
    with tf.io.TFRecordWriter(staging) as writer:
        for example in _valid_examples(sources, validator, tally, config.csv_delimiter):
            writer.write(canonical.serialize(example))
            count["n"] += 1
            count["truncated"] += example.truncated
            count["targets"] += example.has_target
    tally.check()
    _log_truncated(split, count["truncated"], config.max_length)
    files = _write_shards(_read_staging(staging), count["n"], output_dir, split, records_per_shard)
    tf.io.gfile.remove(staging)
    return SplitInfo(files=files, num_records=count["n"], skipped=tally.counts(),
                     truncated=count["truncated"], has_targets=count["targets"] == count["n"],
                     sources=sources)


# Training split ----------------------------------------------------------------------------

def _prepare_train(config: DataConfig, out_dir: str, seed: int, records_per_shard: int):
    validator = RecordValidator(config, labels=config.label_list or None)
    tally = br.SkipTally("train", config.skip_bad_records, config.max_skipped_fraction)
    sources = expand_patterns(split_patterns(config.resolved_train_data()))
    staging = _staging_path(out_dir, "train")
    stats = TrainStats()  # of every valid record: the hold-out is taken out below
    truncated, n = 0, 0
    with tf.io.TFRecordWriter(staging) as writer:
        for example in _valid_examples(sources, validator, tally, config.csv_delimiter):
            writer.write(canonical.serialize(example))
            stats.add(example)
            truncated += example.truncated
            n += 1
    tally.check()
    if n == 0:
        raise ValueError(f"no valid training records in {list(sources)}")
    _log_truncated("train", truncated, config.max_length)

    held_out = _eval_indices(n, 0.0 if config.eval_data else eval_fraction_for(config.eval_fraction, n),
                             seed)
    labels = config.label_list or _sorted_labels(stats.label_counts)  # classes seen in either part
    # One read of the staged stream: each record goes to exactly one part; the held-out records
    # are decoded again, for their statistics to come out of the training split's.
    n_eval = len(held_out)
    train_out = _ShardWriter(out_dir, "train", n - n_eval, records_per_shard)
    eval_out = _ShardWriter(out_dir, "eval", n_eval, records_per_shard) if n_eval else None
    held_out_stats = TrainStats()
    try:
        for i, serialized in enumerate(_read_staging(staging)):
            if i in held_out:
                eval_out.write(serialized)
                held_out_stats.add(canonical.deserialize(serialized))
            else:
                train_out.write(serialized)
    finally:
        train_files = train_out.close()
        eval_files = eval_out.close() if eval_out else ()
    stats.remove(held_out_stats, held_out)
    spec = _make_spec(validator, config, stats, labels)
    splits = {"train": SplitInfo(files=train_files, num_records=n - n_eval,
                                 skipped=tally.counts(), truncated=truncated, sources=sources)}
    if n_eval:
        splits["eval"] = SplitInfo(files=eval_files, num_records=n_eval, sources=sources)
        logger.info("held out %d of %d training records for eval (seed %d)", n_eval, n, seed)
    tf.io.gfile.remove(staging)
    return spec, splits


def eval_fraction_for(eval_fraction: float, num_records: int) -> float:
    """`eval_fraction`, or for -1 (auto) the share the number of training records calls for."""
    if eval_fraction >= 0:
        return eval_fraction
    fraction = AUTO_EVAL_FRACTION if num_records >= AUTO_EVAL_MIN_RECORDS else 0.0
    logger.info("eval_fraction=auto: %s (%d training records; a hold-out from %d on)",
                f"holding out {fraction:.0%}" if fraction else "no hold-out, training on every record "
                "and keeping the last weights", num_records, AUTO_EVAL_MIN_RECORDS)
    return fraction


def _eval_indices(n: int, fraction: float, seed: int) -> frozenset:
    """A seeded random `fraction` of range(n): independent of record order, exact in size."""
    if not fraction:
        return frozenset()
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise ValueError(f"eval_fraction={fraction} of {n} training records leaves none to train on")
    rng = np.random.default_rng(seed)
    return frozenset(int(i) for i in rng.choice(n, size=k, replace=False))


def _sorted_labels(labels) -> Tuple[str, ...]:
    """Sorted class strings; integer-looking labels sort by value ("2" before "10")."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _make_spec(validator: RecordValidator, config: DataConfig, stats: TrainStats,
               labels: Sequence[str]) -> DataSpec:
    mean, std = stats.feature_mean_std()
    vocab = ()
    if validator.input_kind != "features":
        vocab = build_vocab(stats.token_counts, config.min_token_count, config.max_vocab_size)
        if not vocab:
            raise ValueError(f"no training token occurs min_token_count={config.min_token_count} "
                             "times: the vocabulary would be empty")
    return DataSpec(
        input_kind=validator.input_kind, target_kind=validator.target_kind, labels=tuple(labels),
        feature_dim=validator.feature_dim if validator.input_kind == "features" else 0,
        vocab=vocab, num_oov_buckets=config.num_oov_buckets,
        lowercase=config.lowercase if validator.input_kind == "text" else False,
        feature_mean=mean, feature_std=std,
        label_counts=stats.class_counts(labels),
        num_train_examples=stats.num_examples, length_quantiles=stats.length_quantiles(),
        max_length=config.max_length)


# Shared plumbing ---------------------------------------------------------------------------

# Records validated together (their texts tokenized in one call): memory stays flat.
VALIDATE_CHUNK = 256


def _valid_examples(sources: Sequence[str], validator: RecordValidator, tally: br.SkipTally,
                    csv_delimiter: str) -> Iterator[Example]:
    # Decoding allocates millions of lists and floats, each allocation counting towards Python's
    # next garbage collection, and every full collection walked TensorFlow's several hundred
    # thousand long-lived objects too: 0.6 s of a 3.4 s preparation. Frozen, they are left out
    # of collections until the records are read (cycles among new objects are still collected).
    gc.freeze()
    try:
        for path in sources:
            for chunk in _chunks(read_file(path, csv_delimiter), VALIDATE_CHUNK):
                for result in validator.validate_chunk(chunk):
                    if isinstance(result, br.BadRecordError):
                        tally.bad(result)
                        continue
                    tally.keep()
                    yield result
    finally:
        gc.unfreeze()


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    """Lists of up to `size` items in order. When `items` raises (a file that breaks off), the
    items read before it come first, so a bad record among them is still reported first."""
    chunk = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) == size:
                yield chunk
                chunk = []
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _staging_path(out_dir: str, split: str) -> str:
    return tf.io.gfile.join(out_dir, f"_staging-{split}.tfrecord")


# Staged records are read back in batches: one Python call per record cost ~0.1 ms.
STAGING_READ_BATCH = 1024


def _read_staging(path: str) -> Iterator[bytes]:
    for batch in tf.data.TFRecordDataset(path).batch(STAGING_READ_BATCH).as_numpy_iterator():
        yield from batch


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


class _ShardWriter:
    """Writes a split's n records round-robin into ceil(n / records_per_shard) shards (at least
    1), after removing the split's shards of an earlier preparation; `close` returns the paths."""

    def __init__(self, out_dir: str, split: str, n: int, records_per_shard: int):
        for pattern in (f"{split}-*-of-*.tfrecord", f"{split}-*-of-*.tfrecord.gz"):  # older layout's too
            for stale in tf.io.gfile.glob(tf.io.gfile.join(out_dir, pattern)):
                tf.io.gfile.remove(stale)
        count = max(1, -(-n // records_per_shard))
        self.paths = tuple(tf.io.gfile.join(out_dir, shard_name(split, i, count)) for i in range(count))
        self._writers = [tf.io.TFRecordWriter(p) for p in self.paths]
        self._written = 0

    def write(self, record: bytes) -> None:
        self._writers[self._written % len(self._writers)].write(record)
        self._written += 1

    def close(self) -> Tuple[str, ...]:
        for writer in self._writers:
            writer.close()
        return self.paths


def _write_shards(records: Iterator[bytes], n: int, out_dir: str, split: str,
                  records_per_shard: int) -> Tuple[str, ...]:
    """Writes n records into the split's shards (`_ShardWriter`); returns their paths."""
    out = _ShardWriter(out_dir, split, n, records_per_shard)
    try:
        for record in records:
            out.write(record)
    finally:
        out.close()
    return out.paths


def _log_truncated(split: str, truncated: int, max_length: int) -> None:
    if truncated:
        logger.warning("%s: truncated %d sequences to max_length=%d", split, truncated, max_length)


# Manifest and resume ------------------------------------------------------------------------

def _settings(config: DataConfig, seed: int) -> dict:
    settings = {name: getattr(config, name) for name in preparation_fields()}
    settings["seed"] = seed
    return settings


def _write_manifest(path: str, out_dir: str, splits: Dict[str, SplitInfo], settings: dict) -> None:
    splits_json = {}
    for name, info in splits.items():
        entry = dataclasses.asdict(info)
        entry["files"] = [f[len(out_dir):].lstrip("/") for f in info.files]
        entry["sources"] = list(info.sources)
        splits_json[name] = entry
    manifest = {"version": MANIFEST_VERSION, "settings": settings, "splits": splits_json}
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    tf.io.gfile.rename(tmp, path, overwrite=True)  # the manifest marks a finished preparation


def read_manifest(model_dir: str) -> Optional[dict]:
    """The manifest of a prepared model dir as a dict, or None."""
    path = tf.io.gfile.join(prepared_dir(model_dir), MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _reuse(spec: DataSpec, manifest_path: str, out_dir: str, settings: dict) -> PreparedData:
    with tf.io.gfile.GFile(manifest_path) as f:
        manifest = json.load(f)
    old = manifest.get("settings", {})
    changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if changed:
        raise ValueError(
            f"{out_dir} was prepared with other data settings {{field: (then, now)}}: {changed}; "
            "use a new model dir, or the earlier settings")
    splits = {}
    for name, entry in manifest["splits"].items():
        files = tuple(tf.io.gfile.join(out_dir, f) for f in entry["files"])
        missing = [f for f in files if not tf.io.gfile.exists(f)]
        if missing:
            raise FileNotFoundError(f"prepared shards missing from {out_dir}: {missing}")
        splits[name] = SplitInfo(files=files, num_records=entry["num_records"],
                                 skipped=entry["skipped"], truncated=entry["truncated"],
                                 has_targets=entry["has_targets"], sources=tuple(entry["sources"]))
    logger.info("reusing prepared data in %s (%s); source files are not read again", out_dir,
                {name: info.num_records for name, info in splits.items()})
    return PreparedData(spec=spec, splits=splits, reused=True)
