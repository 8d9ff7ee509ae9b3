"""`DataSpec`: what the training data look like, fixed on the first run and saved as assets.

The spec is the one piece of vocabulary shared downstream: `models/` is built from its numbers
(feature width, vocabulary size, label count, normalisation statistics), `trainer/` resumes from
it and `export/` puts its vocabulary and label strings into the serving graph. It is written into
`<model_dir>/assets/` as plain text (`labels.txt`, `vocab.txt`, one entry per line) plus
`data_spec.json` for the numbers, all through `tf.io.gfile` so `gs://` model dirs work.

Token ids: 0 is padding, 1..len(vocab) are vocabulary entries in file order, and
len(vocab)+1 .. len(vocab)+num_oov_buckets are out-of-vocabulary hash buckets.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Tuple

import tensorflow as tf

INPUT_KINDS = ("features", "tokens", "text")
TARGET_KINDS = ("label", "labels", "tags")

ASSETS_DIR = "assets"
LABELS_FILE = "labels.txt"
VOCAB_FILE = "vocab.txt"
SPEC_FILE = "data_spec.json"


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What the model sees, decided once from the training split.

    Attributes:
      input_kind: "features" (dense float steps), "tokens" (pre-split strings) or "text"
        (raw strings, split by `data.tokenizer`).
      target_kind: "label" (one class per sequence), "labels" (multi-label) or "tags" (one
        class per step).
      labels: the label strings; a class id is an index into this tuple.
      feature_dim: width D of a dense feature step (0 for token inputs).
      vocab: token strings (empty for dense inputs); id of vocab[i] is i + 1.
      num_oov_buckets: hash buckets for tokens outside `vocab`.
      lowercase: whether the tokenizer lower-cases text before splitting.
      feature_mean, feature_std: per-feature statistics over real (unpadded) training steps,
        length D each; std is never 0 (constant features get 1.0).
      label_counts: training examples per label (per-step counts for "tags"), same order as
        `labels`; used for the log-prior output bias and class weights.
      num_train_examples: records in the training split after the validation hold-out.
      length_quantiles: lengths at the 0, 10, ..., 100th percentiles of the training split
        (11 ints); bucket boundaries and length-dependent defaults are chosen from them.
      max_length: sequences longer than this were truncated or rejected (0: no limit).
    """

    input_kind: str
    target_kind: str
    labels: Tuple[str, ...]
    feature_dim: int = 0
    vocab: Tuple[str, ...] = ()
    num_oov_buckets: int = 1
    lowercase: bool = True
    feature_mean: Tuple[float, ...] = ()
    feature_std: Tuple[float, ...] = ()
    label_counts: Tuple[int, ...] = ()
    num_train_examples: int = 0
    length_quantiles: Tuple[int, ...] = ()
    max_length: int = 0

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"target_kind must be one of {TARGET_KINDS}, got {self.target_kind!r}")
        if not self.labels:
            raise ValueError("DataSpec needs at least one label")
        if self.input_kind == "features":
            if self.feature_dim <= 0:
                raise ValueError(f"dense features need feature_dim > 0, got {self.feature_dim}")
            for name in ("feature_mean", "feature_std"):
                values = getattr(self, name)
                if values and len(values) != self.feature_dim:
                    raise ValueError(
                        f"{name} has {len(values)} values, expected feature_dim={self.feature_dim}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def vocab_size(self) -> int:
        """Rows of an embedding table: padding + vocabulary + OOV buckets (0 for dense)."""
        if self.input_kind == "features":
            return 0
        return 1 + len(self.vocab) + self.num_oov_buckets

    @property
    def is_tokens(self) -> bool:
        return self.input_kind in ("tokens", "text")

    def save(self, model_dir: str) -> str:
        """Writes the spec into `<model_dir>/assets/`; returns that folder."""
        assets = tf.io.gfile.join(model_dir, ASSETS_DIR)
        tf.io.gfile.makedirs(assets)
        _write_lines(tf.io.gfile.join(assets, LABELS_FILE), self.labels)
        if self.is_tokens:
            _write_lines(tf.io.gfile.join(assets, VOCAB_FILE), self.vocab)
        numbers = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("labels", "vocab")}
        with tf.io.gfile.GFile(tf.io.gfile.join(assets, SPEC_FILE), "w") as f:
            json.dump(numbers, f, indent=1)
        return assets

    @classmethod
    def load(cls, model_dir: str) -> Optional["DataSpec"]:
        """Reads a spec written by `save`, or returns None when `model_dir` has none."""
        assets = tf.io.gfile.join(model_dir, ASSETS_DIR)
        spec_path = tf.io.gfile.join(assets, SPEC_FILE)
        if not tf.io.gfile.exists(spec_path):
            return None
        with tf.io.gfile.GFile(spec_path) as f:
            numbers = json.load(f)
        labels = _read_lines(tf.io.gfile.join(assets, LABELS_FILE))
        vocab_path = tf.io.gfile.join(assets, VOCAB_FILE)
        vocab = _read_lines(vocab_path) if tf.io.gfile.exists(vocab_path) else ()
        for key, value in numbers.items():
            if isinstance(value, list):
                numbers[key] = tuple(value)
        return cls(labels=labels, vocab=vocab, **numbers)


def _write_lines(path: str, entries) -> None:
    for entry in entries:
        if "\n" in entry or "\r" in entry:
            raise ValueError(f"{path}: entry {entry!r} holds a line break and cannot be an asset line")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(entry + "\n" for entry in entries))


def _read_lines(path: str) -> Tuple[str, ...]:
    with tf.io.gfile.GFile(path) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(lines)
