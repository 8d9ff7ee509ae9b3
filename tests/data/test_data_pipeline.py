"""make_dataset: exact lengths, zero padding, each example once per epoch, bucketing, sharding."""

import collections
import dataclasses

import numpy as np
import pytest

from data_testlib import dense_records, write_jsonl
from data.config import DataConfig
from data.pipeline import bucket_boundaries, make_dataset
from data.prepare import prepare_data

N = 40


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """40 dense records (lengths 1..5, D=2) prepared into 3 train shards, no hold-out."""
    tmp = tmp_path_factory.mktemp("dense")
    train = write_jsonl(tmp / "train.jsonl", dense_records(N))
    config = DataConfig(train_data=train, eval_fraction=0.0, batch_size=6, num_buckets=3)
    prepared = prepare_data(config, str(tmp / "model"), seed=0, records_per_shard=15)
    return config, prepared


def batches(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def check_batch(batch):
    """Every example: exact length, step values from its id, zeros after its length."""
    features, lengths = batch["features"], batch["lengths"]
    assert features.dtype == np.float32 and lengths.dtype == np.int32
    assert features.shape[1] == lengths.max()  # T = the longest in the batch
    for row, length, id_ in zip(features, lengths, batch["id"]):
        i = int(id_.decode()[1:])
        assert length == 1 + i % 5
        np.testing.assert_array_equal(row[:length, 0], i + np.arange(length))
        assert not row[length:].any()  # padding is exactly 0


@pytest.mark.parametrize("bucketing", [False, True])
def test_one_training_epoch_holds_every_example_once(dense, bucketing):
    config, prepared = dense
    config = dataclasses.replace(config, bucketing=bucketing)
    ds = make_dataset(prepared.splits["train"].files, prepared.spec, config, training=True,
                      seed=1, repeat=False)
    epoch = batches(ds)
    ids = [i for b in epoch for i in b["id"]]
    assert collections.Counter(ids) == collections.Counter(f"r{i}".encode() for i in range(N))
    for batch in epoch:
        check_batch(batch)
        assert batch["label"].dtype == np.int32 and batch["weight"].tolist() == [1.0] * len(
            batch["weight"])
    if bucketing:  # a batch never mixes lengths from different buckets
        edges = (0,) + bucket_boundaries(prepared.spec, config.num_buckets) + (10 ** 9,)
        assert len(edges) > 2
        for batch in epoch:
            bucket = np.searchsorted(edges, batch["lengths"], side="right")
            assert len(set(bucket)) == 1


@pytest.mark.slow  # more than two epochs, read three times
def test_training_repeats_forever_and_is_seeded(dense):
    config, prepared = dense
    files = prepared.splits["train"].files

    def first_ids(seed):
        ds = make_dataset(files, prepared.spec, config, training=True, seed=seed)
        return [b["id"].tolist() for b in batches(ds.take(3 * N // config.batch_size))]

    ids = first_ids(5)
    assert len(ids) == 3 * N // config.batch_size  # more than two epochs' worth
    assert first_ids(5) == ids and first_ids(6) != ids


def test_eval_is_one_ordered_pass_keeping_the_last_partial_batch(dense):
    config, prepared = dense
    ds = make_dataset(prepared.splits["train"].files, prepared.spec, config, training=False,
                      seed=0)
    epoch = batches(ds)
    assert [len(b["id"]) for b in epoch] == [6] * 6 + [4]
    for batch in epoch:
        check_batch(batch)
    assert batches(ds)[0]["id"].tolist() == epoch[0]["id"].tolist()  # no shuffle


def test_eval_by_length_reads_every_example_once_in_short_batches(dense):
    """An evaluation pass batched by length: each example once, the same pass every time, no
    batch mixing buckets, and no batch padded longer than plain batching pads it overall."""
    config, prepared = dense
    files, spec = prepared.splits["train"].files, prepared.spec
    plain = batches(make_dataset(files, spec, config, training=False, seed=0))
    by_length = batches(make_dataset(files, spec, config, training=False, seed=0, by_length=True))
    ids = [i for b in by_length for i in b["id"]]
    assert collections.Counter(ids) == collections.Counter(i for b in plain for i in b["id"])
    assert len(ids) == N
    edges = (0,) + bucket_boundaries(spec, config.num_buckets) + (10 ** 9,)
    for batch in by_length:
        check_batch(batch)
        assert len(set(np.searchsorted(edges, batch["lengths"], side="right"))) == 1
    padded = lambda epoch: sum(b["features"].shape[0] * b["features"].shape[1] for b in epoch)
    assert padded(by_length) < padded(plain)  # fewer padded steps to run
    again = batches(make_dataset(files, spec, config, training=False, seed=0, by_length=True))
    assert [b["id"].tolist() for b in again] == [b["id"].tolist() for b in by_length]


def test_record_level_sharding_splits_the_data(dense):
    config, prepared = dense
    seen = []
    for index in range(2):
        ds = make_dataset(prepared.splits["train"].files, prepared.spec, config,
                          training=False, seed=0, num_shards=2, shard_index=index)
        seen.append({i for b in batches(ds) for i in b["id"]})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == N
    assert abs(len(seen[0]) - len(seen[1])) <= 1


def test_token_multilabel_and_tag_targets(tmp_path):
    multi = write_jsonl(tmp_path / "multi.jsonl", [
        {"tokens": ["a", "b", "a"], "labels": ["y", "x", "y"], "weight": 2},
        {"tokens": ["zzz"], "labels": []}])
    prepared = prepare_data(DataConfig(train_data=multi, eval_fraction=0, min_token_count=2),
                            str(tmp_path / "m1"), seed=0)
    assert prepared.spec.vocab == ("a",)
    [batch] = batches(make_dataset(prepared.splits["train"].files, prepared.spec, DataConfig(),
                                   training=False, seed=0))
    assert batch["token_ids"].dtype == np.int32
    assert batch["token_ids"][0, [0, 2]].tolist() == [1, 1] and batch["token_ids"][0, 1] >= 2
    assert batch["token_ids"][1, 1:].tolist() == [0, 0] and batch["token_ids"][1, 0] >= 2
    assert batch["labels"].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # labels ("x", "y")
    assert batch["weight"].tolist() == [2.0, 1.0]

    tagged = write_jsonl(tmp_path / "tags.jsonl", [
        {"tokens": ["a", "b", "c"], "tags": ["O", "B", "I"]}, {"tokens": ["a"], "tags": ["B"]}])
    prepared = prepare_data(DataConfig(train_data=tagged, eval_fraction=0),
                            str(tmp_path / "m2"), seed=0)
    [batch] = batches(make_dataset(prepared.splits["train"].files, prepared.spec, DataConfig(),
                                   training=False, seed=0))
    assert batch["tags"].dtype == np.int32
    assert batch["tags"].tolist() == [[2, 0, 1], [0, 0, 0]]  # labels ("B", "I", "O"); 0-padded
    assert batch["lengths"].tolist() == [3, 1]


def test_bucket_boundaries_follow_the_length_quantiles(dense):
    _, prepared = dense
    spec = prepared.spec
    assert bucket_boundaries(spec, 1) == ()
    cuts = bucket_boundaries(spec, 3)
    assert list(cuts) == sorted(set(cuts)) and all(spec.length_quantiles[0] < c <= 5
                                                    for c in cuts)


def test_gzip_shards_of_an_older_preparation_read_the_same(dense, tmp_path):
    """Preparations before 2026-12-06 wrote `.tfrecord.gz` shards; a model dir resumed from
    one is read as gzip, by its names, into the same batches. Mixed lists are refused."""
    import tensorflow as tf

    config, prepared = dense
    plain = list(prepared.splits["train"].files)
    zipped = []
    for path in plain:
        target = str(tmp_path / (path.rsplit("/", 1)[-1] + ".gz"))
        with tf.io.TFRecordWriter(target, options="GZIP") as writer:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                writer.write(record)
        zipped.append(target)
    spec = prepared.spec
    expected = batches(make_dataset(plain, spec, config, training=False, seed=0))
    got = batches(make_dataset(zipped, spec, config, training=False, seed=0))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="mixed gzip and uncompressed shards"):
        make_dataset(plain[:1] + zipped[1:], spec, config, training=False, seed=0)
