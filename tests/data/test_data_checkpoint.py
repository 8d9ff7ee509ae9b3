"""A training iterator restored in a new process continues at the exact next batch."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from data_checkpoint_worker import summarize
from data_testlib import dense_records, write_jsonl
from data.config import DataConfig
from data.pipeline import make_dataset
from data.prepare import prepare_data

WORKER = str(pathlib.Path(__file__).with_name("data_checkpoint_worker.py"))
SEED, BEFORE, AFTER = 11, 9, 6  # 40 records / batch 6: the save falls in the second epoch


@pytest.mark.slow  # two worker processes
def test_iterator_checkpoint_restores_in_a_new_process(tmp_path):
    # Later epochs' reshuffles follow TensorFlow's global seed as well as the op seed: both
    # processes set it, as train_and_evaluate does from --seed (and as an earlier test in this
    # process may already have done with another value).
    tf.random.set_seed(SEED)
    train = write_jsonl(tmp_path / "train.jsonl", dense_records(40))
    expected, commands = {}, []
    for bucketing in (False, True):
        config = DataConfig(train_data=train, eval_fraction=0.1, batch_size=6, num_buckets=3,
                            shuffle_buffer=16, bucketing=bucketing)
        model_dir = str(tmp_path / f"model-{bucketing}")
        prepared = prepare_data(config, model_dir, SEED, records_per_shard=10)
        iterator = iter(make_dataset(prepared.splits["train"].files, prepared.spec, config,
                                     training=True, seed=SEED))
        for _ in range(BEFORE):
            next(iterator)
        prefix = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / f"ckpt-{bucketing}"))
        expected[bucketing] = [summarize(next(iterator)) for _ in range(AFTER)]
        fresh = iter(make_dataset(prepared.splits["train"].files, prepared.spec, config,
                                  training=True, seed=SEED))
        # The check can fail: an iterator that starts over gives other batches.
        assert [summarize(next(fresh)) for _ in range(AFTER)] != expected[bucketing]
        commands.append([sys.executable, WORKER, model_dir,
                         json.dumps(dataclasses.asdict(config)), str(SEED), str(AFTER), prefix])
    # Both restores run at once: each pays the TensorFlow import.
    workers = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for c in commands]
    for bucketing, worker in zip((False, True), workers):
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        restored = json.loads(out.strip().splitlines()[-1])
        assert restored == expected[bucketing], f"bucketing={bucketing}"


def test_splits_over_cache_max_mb_stay_out_of_memory_and_out_of_checkpoints(tmp_path):
    """A cached split rides along in every training-iterator checkpoint; one over the limit
    is read from disk each epoch instead, and the checkpoint stays small."""
    train = write_jsonl(tmp_path / "train.jsonl", dense_records(200))
    sizes = {}
    for limit in (0.0, 1e-4):  # no limit; 100 bytes
        config = DataConfig(train_data=train, eval_fraction=0.0, batch_size=8, shuffle_buffer=4,
                            cache_max_mb=limit)
        prepared = prepare_data(config, str(tmp_path / f"model-{limit}"), SEED)
        iterator = iter(make_dataset(prepared.splits["train"].files, prepared.spec, config,
                                     training=True, seed=SEED))
        for _ in range(30):  # past the first epoch (25 batches): the cache is full
            next(iterator)
        tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / f"ckpt-{limit}"))
        sizes[limit] = sum(p.stat().st_size for p in tmp_path.glob(f"ckpt-{limit}.*"))
    raw_bytes = 200 * 3 * 2 * 4  # the features alone: 200 records x 3 steps (mean) x 2 float32
    assert sizes[0.0] > sizes[1e-4] + raw_bytes, sizes
