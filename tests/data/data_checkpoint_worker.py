"""Run by test_data_checkpoint.py in a fresh process: restore a training iterator, print batches.

Usage: python data_checkpoint_worker.py MODEL_DIR CONFIG_JSON SEED NUM_BATCHES CHECKPOINT_PREFIX
Prints one JSON line: [[ids, lengths, feature sum] per batch].
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import tensorflow as tf  # noqa: E402

from data.config import DataConfig  # noqa: E402
from data.pipeline import make_dataset  # noqa: E402
from data.prepare import prepare_data  # noqa: E402


def summarize(batch):
    return [[i.decode() for i in batch["id"].numpy()], batch["lengths"].numpy().tolist(),
            round(float(tf.reduce_sum(batch["features"])), 4)]


def main(model_dir, config_json, seed, num_batches, prefix):
    config = DataConfig(**json.loads(config_json))
    tf.random.set_seed(int(seed))  # as the test process did before saving
    prepared = prepare_data(config, model_dir, int(seed))  # a resume: reuses the shards
    ds = make_dataset(prepared.splits["train"].files, prepared.spec, config, training=True,
                      seed=int(seed))
    iterator = iter(ds)
    tf.train.Checkpoint(iterator=iterator).read(prefix).expect_partial()
    print(json.dumps([summarize(next(iterator)) for _ in range(int(num_batches))]))


if __name__ == "__main__":
    main(*sys.argv[1:])
