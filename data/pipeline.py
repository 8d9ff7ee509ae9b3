"""The input pipeline: prepared shards -> padded (optionally length-bucketed) batches.

    files -> interleave -> shard (multi-worker) -> parse -> cache -> shuffle -> repeat
          -> padded batch (bucketed by length when training) -> prefetch

Each batch is a flat dict (B examples, T = the longest length in the batch):

    "features"  float32 [B, T, D]  raw features (the model normalises with the spec's mean/std)
 or "token_ids" int32   [B, T]     0 padding, 1..V vocabulary, V+1.. OOV buckets
    "lengths"   int32   [B]        real steps; the only truth about padding (0.0 is a real value)
    "label"     int32   [B]        class index             (target_kind "label")
 or "labels"    float32 [B, C]     multi-hot               (target_kind "labels")
 or "tags"      int32   [B, T]     class index per step    (target_kind "tags")
    "weight"    float32 [B]        1.0 when the record had none
    "id"        string  [B]        the record id, or "<file>:<record>"

Padding positions are exactly 0. Iterator checkpoints (`tf.train.Checkpoint(iterator=it)`)
restore exactly, in a new process too, because nothing here is random except seeded shuffles and
the order is deterministic when `config.deterministic` (see tests/data/test_checkpoint.py;
`bucket_by_sequence_length` checkpoints fine with the default, non-symbolic checkpointing).
With `config.cache` (and a split no larger than `config.cache_max_mb`), the checkpoint of a
training iterator also holds the cached examples, which is why the trainer checkpoints the
step instead and skips to it (`trainer.train._data_position`).
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from data import canonical
from data.config import DataConfig
from data.file_io import tfrecord_compression
from data.spec import DataSpec
from data.tokenizer import make_token_lookup


def make_dataset(files: Sequence[str], spec: DataSpec, config: DataConfig, *, training: bool,
                 seed: int, num_shards: int = 1, shard_index: int = 0, with_targets: bool = True,
                 repeat: Optional[bool] = None, by_length: Optional[bool] = None) -> tf.data.Dataset:
    """Batches of prepared examples.

    Args:
      files: prepared shards (`SplitInfo.files`).
      spec: the data spec (kinds, labels, vocabulary, length quantiles).
      config: batch size, bucketing, shuffle buffer, cache, determinism.
      training: shuffle (seeded), repeat forever and bucket by length; otherwise one pass in
        file order, plain padded batches, the last partial batch kept.
      seed: the shuffle seed. The reshuffle of each later epoch also follows TensorFlow's
        global seed (`tf.random.set_seed`): a process that restores an iterator checkpoint must
        set the same global seed first, as `trainer.train_and_evaluate` does from `--seed`.
      num_shards, shard_index: record-level sharding for multi-worker training, applied
        before the shuffle; worker `shard_index` sees every `num_shards`-th record.
      with_targets: read targets (False for prediction files without them).
      repeat: override the repetition (default: `training`); `training=True, repeat=False`
        gives exactly one shuffled, bucketed epoch.
      by_length: batch by length buckets (when `config.bucketing`; default: `training`).
        Evaluation passes use it: every example is still read once, but a batch is padded to
        its bucket's longest rather than to the longest of 32 lengths drawn at random (on
        lengths 5 to 18,921 that was most of an evaluation's time). The order of the examples
        then differs from file order; keep the default where order or a mixed first batch
        matters (export checks, prediction).

    Returns:
      A `tf.data.Dataset` of batch dicts (see the module docstring).
    """
    files = list(files)
    if not files:
        raise ValueError("make_dataset needs at least one file")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
    repeat = training if repeat is None else repeat
    parallel = tf.data.AUTOTUNE

    compressions = {tfrecord_compression(f) for f in files}
    if len(compressions) > 1:
        raise ValueError(f"make_dataset: mixed gzip and uncompressed shards {files}")
    compression = compressions.pop()
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=min(len(files), 8), block_length=1,
        num_parallel_calls=parallel,
        deterministic=config.deterministic)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    ds = ds.map(_convert_fn(spec, with_targets), num_parallel_calls=parallel,
                deterministic=config.deterministic)
    if config.cache and _fits_cache(files, config.cache_max_mb):
        ds = ds.cache()
    if training:
        ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    by_length = training if by_length is None else by_length
    boundaries = bucket_boundaries(spec, config.num_buckets) if by_length and config.bucketing else ()
    if boundaries:
        ds = ds.bucket_by_sequence_length(
            lambda e: e["lengths"], list(boundaries), [config.batch_size] * (len(boundaries) + 1),
            pad_to_bucket_boundary=False, drop_remainder=False)
    else:
        ds = ds.padded_batch(config.batch_size, drop_remainder=False)
    ds = ds.prefetch(parallel)
    options = tf.data.Options()
    options.deterministic = config.deterministic
    return ds.with_options(options)


def _fits_cache(files: Sequence[str], cache_max_mb: float) -> bool:
    """Whether `files` (MB as stored) are small enough to cache in memory; logs a refusal."""
    if not cache_max_mb:
        return True
    size_mb = sum(tf.io.gfile.stat(f).length for f in files) / 2 ** 20
    if size_mb <= cache_max_mb:
        return True
    logging.info("not caching %.1f MB of prepared data in memory (cache_max_mb=%g): every epoch "
                 "reads it from disk", size_mb, cache_max_mb)
    return False


def bucket_boundaries(spec: DataSpec, num_buckets: int) -> Tuple[int, ...]:
    """Length bucket boundaries from the training length quantiles.

    Bucket i holds lengths in [boundary[i-1], boundary[i]); boundaries sit just above the
    (100 * i / num_buckets)th percentile, so buckets hold similar shares of the data. Equal
    quantiles collapse, so there may be fewer buckets than asked for.
    """
    quantiles = spec.length_quantiles
    if num_buckets < 2 or len(quantiles) != 11:
        return ()
    cuts = []
    for i in range(1, num_buckets):
        boundary = quantiles[round(10 * i / num_buckets)] + 1
        if boundary <= quantiles[-1] and (not cuts or boundary > cuts[-1]):
            cuts.append(boundary)
    return tuple(cuts)


def _convert_fn(spec: DataSpec, with_targets: bool):
    """Parsed shard record (class strings, tokens) -> model tensors (class ids, token ids)."""
    parse = canonical.parse_fn(spec, with_targets)
    label_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(spec.labels),
                                            tf.range(spec.num_classes, dtype=tf.int64)),
        default_value=-1)
    token_lookup = make_token_lookup(spec.vocab, spec.num_oov_buckets) if spec.is_tokens else None

    def convert(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        example = parse(serialized)
        if token_lookup is not None:
            example["token_ids"] = token_lookup(example.pop("tokens"))
        if "label" in example:
            example["label"] = tf.cast(label_table.lookup(example["label"]), tf.int32)
        if "labels" in example:
            ids = label_table.lookup(example["labels"])
            hot = tf.reduce_sum(tf.one_hot(ids, spec.num_classes, dtype=tf.float32), axis=0)
            example["labels"] = tf.minimum(hot, 1.0)
        if "tags" in example:
            example["tags"] = tf.cast(label_table.lookup(example["tags"]), tf.int32)
        return example

    return convert
