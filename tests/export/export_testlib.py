"""Helpers for tests/export: hand-made specs and batches, and the two shared exports:

* `dense_export`: 12 features, 9 classes (JapaneseVowels-shaped, so the README literal fits),
  LSTM with input/state/output dropout (one mask per example), quantized TFLite too;
* `token_export`: raw text, binary head, bidirectional GRU, mean pooling, no dropout.

Both models are untrained (fresh weights from `models.build_model`) with a hand-made DataSpec;
the export path does not care whether weights were trained.
"""

import pathlib
import types

import numpy as np
import tensorflow as tf

from data.spec import DataSpec
from export import export_model
from models import ModelConfig, build_model
from testlib import PINNED

DENSE_LABELS = tuple(str(i) for i in range(1, 10))
# Two entries are not ASCII: real vocabularies hold accents and emoji (an export once failed
# on a rocket emoji in a PyPI summary).
VOCAB = ("the", "movie", "good", "bad", "was", ",", "!", "not", "plot", "great", "café", "\U0001f680")
MC_SAMPLES = 8
MC_SEED = 7


def dense_spec() -> DataSpec:
    rng = np.random.default_rng(0)
    return DataSpec(
        input_kind="features", target_kind="label", labels=DENSE_LABELS, feature_dim=12,
        feature_mean=tuple(float(v) for v in rng.normal(size=12).round(3)),
        feature_std=tuple(float(v) for v in rng.uniform(0.5, 2.0, 12).round(3)),
        label_counts=(10,) * 9, num_train_examples=90, length_quantiles=tuple(range(3, 25, 2)))


def token_spec() -> DataSpec:
    return DataSpec(input_kind="text", target_kind="label", labels=("neg", "pos"), vocab=VOCAB,
                    num_oov_buckets=2, label_counts=(5, 5), num_train_examples=10,
                    length_quantiles=tuple(range(2, 13)))


def model_config(spec: DataSpec, **hyper) -> ModelConfig:
    """The trainer's `with_data_spec`, for a hand-made spec."""
    hyper = {**PINNED, **hyper}
    return ModelConfig(
        input_kind="tokens" if spec.is_tokens else "features", target_kind=spec.target_kind,
        feature_dim=spec.feature_dim, vocab_size=spec.vocab_size, num_classes=spec.num_classes,
        feature_mean=spec.feature_mean, feature_std=spec.feature_std,
        class_counts=tuple(spec.label_counts), num_train_examples=spec.num_train_examples, **hyper)


def make_batches(spec: DataSpec, count=3, size=16, seed=0):
    """Padded batch dicts of tf tensors, like `data.pipeline.make_dataset` gives."""
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(count):
        lengths = rng.integers(2, 15, size).astype(np.int32)
        real = np.arange(lengths.max())[None, :] < lengths[:, None]
        batch = {"lengths": lengths,
                 "label": rng.integers(0, spec.num_classes, size).astype(np.int32),
                 "weight": np.ones(size, np.float32),
                 "id": np.array([f"b{b}-r{i}".encode() for i in range(size)])}
        if spec.is_tokens:
            ids = rng.integers(1, spec.vocab_size, (size, lengths.max()))
            batch["token_ids"] = np.where(real, ids, 0).astype(np.int32)
        else:
            x = rng.normal(size=(size, lengths.max(), spec.feature_dim))
            batch["features"] = np.where(real[..., None], x, 0.0).astype(np.float32)
        batches.append({key: tf.constant(value) for key, value in batch.items()})
    return batches


def run_config(model, model_dir, export_dir, formats="saved_model,tflite,onnx", quantize=False):
    train = types.SimpleNamespace(model_dir=str(model_dir), export_dir=str(export_dir),
                                  export_formats=formats, export_quantize=quantize,
                                  export_mc_samples=MC_SAMPLES, seed=MC_SEED)
    return types.SimpleNamespace(model=model.model_config, train=train)


def make_export(root, spec, quantize, **hyper):
    tf.keras.utils.set_random_seed(0)
    model = build_model(model_config(spec, **hyper))
    model_dir, export_dir = root / "model", root / "export"
    spec.save(str(model_dir))
    batches = make_batches(spec)
    result = export_model(model, spec, run_config(model, model_dir, export_dir, quantize=quantize),
                          batches)
    return types.SimpleNamespace(model=model, spec=spec, result=result, batches=batches,
                                 model_dir=model_dir, export_dir=export_dir,
                                 version_dir=pathlib.Path(result["saved_model"]))
