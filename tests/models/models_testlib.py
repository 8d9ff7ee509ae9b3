"""Literal batches and tiny configs shared by the tests in tests/models/ (not the rnn ones)."""

import numpy as np
import tensorflow as tf

from models import ModelConfig
from testlib import PINNED

FEATURE_DIM = 3
VOCAB_SIZE = 20
# Real tokens come from [1, REAL_VOCAB); padding garbage from [REAL_VOCAB, VOCAB_SIZE) and beyond,
# so an embedding gradient row can tell which of the two it came from.
REAL_VOCAB = 10
TARGET_FOR_HEAD = {"multiclass": "label", "binary": "label", "multilabel": "labels",
                   "tagging": "tags"}


def tiny_config(head="multiclass", *, tokens=False, num_classes=None, **overrides):
    """A ModelConfig with 4 hidden units, `PINNED` settings and data fields set for `head`."""
    num_classes = num_classes or (2 if head == "binary" else 3)
    fields = dict(
        **PINNED,
        hidden_units=4, embedding_dim=3, head=head, target_kind=TARGET_FOR_HEAD[head],
        num_classes=num_classes,
        input_kind="tokens" if tokens else "features",
        feature_dim=0 if tokens else FEATURE_DIM,
        vocab_size=VOCAB_SIZE if tokens else 0,
        feature_mean=() if tokens else (0.5, -1.0, 2.0),
        feature_std=() if tokens else (2.0, 1.0, 0.5),
        class_counts=tuple(float(i + 1) for i in range(num_classes)),
        num_train_examples=10,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def make_batch(config, lengths=(5, 2, 3), seed=0):
    """Numpy batch dict with every target; values past each length are garbage, not zeros."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int32)
    batch_size, max_time = len(lengths), int(lengths.max())
    real = np.arange(max_time)[None, :] < lengths[:, None]
    c = config.num_classes
    batch = {
        "lengths": lengths,
        "label": rng.integers(0, c, batch_size).astype(np.int32),
        "labels": (rng.random((batch_size, c)) < 0.5).astype(np.float32),
        "tags": np.where(real, rng.integers(0, c, (batch_size, max_time)), 77).astype(np.int32),
        "weight": rng.uniform(0.5, 2.0, batch_size).astype(np.float32),
    }
    if config.uses_tokens:
        ids = rng.integers(1, REAL_VOCAB, (batch_size, max_time))
        garbage = rng.integers(REAL_VOCAB, VOCAB_SIZE + 5, (batch_size, max_time))
        batch["token_ids"] = np.where(real, ids, garbage).astype(np.int32)
    else:
        features = rng.normal(size=(batch_size, max_time, FEATURE_DIM))
        garbage = rng.normal(scale=1e3, size=features.shape)
        batch["features"] = np.where(real[:, :, None], features, garbage).astype(np.float32)
    return batch


def pad_batch(batch, extra=3, seed=1):
    """The same batch with `extra` more garbage steps appended to every time-major key."""
    rng = np.random.default_rng(seed)
    padded = dict(batch)
    b = len(batch["lengths"])
    padded["tags"] = np.concatenate([batch["tags"], rng.integers(50, 99, (b, extra))], 1).astype(np.int32)
    if "token_ids" in batch:
        garbage = rng.integers(REAL_VOCAB, VOCAB_SIZE + 5, (b, extra))
        padded["token_ids"] = np.concatenate([batch["token_ids"], garbage], 1).astype(np.int32)
    if "features" in batch:
        garbage = rng.normal(scale=1e3, size=(b, extra, batch["features"].shape[-1]))
        padded["features"] = np.concatenate([batch["features"], garbage], 1).astype(np.float32)
    return padded


def to_tensors(batch):
    return {k: tf.constant(v) for k, v in batch.items()}
