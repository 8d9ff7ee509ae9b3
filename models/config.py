"""`ModelConfig`: every number a `SequenceClassifier` is built from, in one frozen dataclass.

Two kinds of field:

* hyperparameters (no metadata): the trainer turns each into a flag, `hidden_units` ->
  `--hidden-units`, so renaming one renames a flag;
* data-derived fields (`metadata={"derived": True}`): copied by the trainer from the data spec
  (feature width, vocabulary size, label count, normalisation statistics, class counts). They are
  never flags; `models/` never reads the spec itself.

`dataclasses.asdict(config)` is JSON-ready and `ModelConfig.from_dict` reverses it (lists from JSON
become tuples again), which is how `SequenceClassifier.get_config` round-trips.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

# The names registered in `models.rnn.cells.CELLS` (a test holds them equal), kept here so a
# config validates, and `--help` lists them, without importing TensorFlow.
CELLS = ("lstm", "gru", "rnn", "layer_norm_lstm", "peephole_lstm")
POOLING_NAMES = ("last", "mean", "max", "attention")
HEAD_NAMES = ("auto", "multiclass", "binary", "multilabel", "tagging")
CLASS_WEIGHTINGS = ("none", "balanced")
SEQUENCE_NORMS = ("on", "off")
# Most stride one front-end convolution takes; a larger total stride needs more layers.
MAX_STRIDE_PER_LAYER = 4
# "text" is accepted because the data spec says so for raw strings: the model still sees token ids.
INPUT_KINDS = ("features", "tokens", "text")
TARGET_KINDS = ("label", "labels", "tags")

# Which heads can be trained on which target kind.
_HEADS_FOR_TARGET = {
    "label": ("multiclass", "binary"),
    "labels": ("multilabel",),
    "tags": ("tagging",),
}


def _derived(default):
    return dataclasses.field(default=default, metadata={"derived": True})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters and data-derived sizes of a `SequenceClassifier`.

    Attributes (hyperparameters, one flag each):
      cell: recurrent cell, one of `CELLS`.
      hidden_units: units per direction per layer.
      num_layers: stacked recurrent layers.
      bidirectional: run a backward twin of every layer and concatenate.
      pooling: how per-step outputs become one vector: last | mean | max | attention, or
        "auto", decided by the trainer from the data (`trainer/rules.py`), built as "mean".
      head: auto | multiclass | binary | multilabel | tagging. "auto" picks from `target_kind`:
        label -> multiclass (binary, one logit, when there are exactly 2 classes),
        labels -> multilabel, tags -> tagging.
      embedding_dim: width of the token embedding (token inputs only), or -1: decided by the
        trainer from the data (`trainer/rules.py`), built as 64 until resolved.
      input_keep_prob, state_keep_prob, output_keep_prob: TF1 DropoutWrapper keep probabilities,
        each in (0, 1]; 1.0 disables that dropout.
      variational_recurrent: one dropout mask per sequence (True) or per step (False).
      mask_per_example: draw a mask per example rather than one shared by the batch.
      update_keep_prob: keep probability of the cell's candidate update (recurrent dropout in the
        style of Semeniuta et al.), in (0, 1].
      forget_bias: added to the LSTM forget gate.
      label_smoothing: in [0, 1); mass spread uniformly over the classes of the target, or -1:
        decided by the trainer from the data (`trainer/rules.py`), 0 until resolved.
      class_weighting: none | balanced (weights from `class_counts`).
      prior_bias_init: initialise the output bias from `class_counts` so step 0 predicts the
        training base rate.
      sequence_norm: "on" z-normalises every dense sequence over its own real steps, per
        feature, after the training-set normalisation (time-series shape, not level), for
        recordings that differ in gain or offset; "off". Off by default: on the development
        suite it changed nothing on already z-normalised sets and removed the signal on PigCVP,
        where level and scale identify the subject (bench/real_data_results.md).
      conv_layers: strided 1-D convolutions before the recurrence (`models/frontend.py`); 0 =
        none; -1 = "auto", decided by the trainer from the training lengths, built as 0.
      conv_filters: channels of every front-end convolution.
      conv_kernel_size: steps each front-end convolution reads.
      conv_stride: total stride of the front end (a power of 2, spread over the layers, at
        most 4 per layer): the recurrence reads ceil(length / conv_stride) steps; -1 = "auto".
      conv_branch: with a front end, also average its outputs over real steps and concatenate
        that with the recurrence's pooled vector (LSTM-FCN's two branches), so the head reads
        the convolutional features directly as well.
      random_features: about how many MiniROCKET-style random-convolution features
        (`models/random_conv.py`: fixed dilated kernels, proportion of positive values over
        real steps) are concatenated before the head, dense inputs only; 0 = none; -1 =
        "auto", decided by the trainer from the training lengths, built as 0.
      ngram_orders: token inputs only: n-grams of orders 1..N hashed into an embedding table
        whose mean over a sequence's real steps is concatenated before the head
        (`models/ngram_bag.py`, fastText's bag of n-grams); 0 = none; -1 = "auto", decided by
        the trainer from the alphabet and the median length, built as 0.
      ngram_buckets: rows of the n-gram table (at most 2**18); -1 = "auto", decided by the
        trainer with the orders (must be set when a bag is built).
      ngram_dim: width of each n-gram row.

    Attributes (derived from the data spec by the trainer, not flags):
      input_kind: features | tokens | text (text arrives as token ids, like tokens).
      target_kind: label | labels | tags.
      feature_dim: width D of dense feature steps (features only).
      vocab_size: embedding rows including padding id 0 and the OOV buckets (tokens only).
      num_classes: number of labels C.
      feature_mean, feature_std: per-feature normalisation constants, length D, or empty for
        none; baked into the graph so serving normalises the same way.
      class_counts: training examples per class (per real step for tags), length C, or empty.
      num_train_examples: training examples; only multilabel needs it (prior log-odds and
        balanced positive weights), 0 when unknown.
      reference_length: median training sequence length (sets the random features' dilations),
        0 when unknown.
    """

    cell: str = "lstm"
    hidden_units: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "auto"
    head: str = "auto"
    embedding_dim: int = -1
    input_keep_prob: float = 0.9
    state_keep_prob: float = 0.8
    output_keep_prob: float = 0.8
    variational_recurrent: bool = True
    mask_per_example: bool = True
    update_keep_prob: float = 1.0
    forget_bias: float = 1.0
    label_smoothing: float = -1.0
    class_weighting: str = "none"
    prior_bias_init: bool = True
    sequence_norm: str = "off"
    conv_layers: int = -1
    conv_filters: int = 64
    conv_kernel_size: int = 7
    conv_stride: int = -1
    conv_branch: bool = True
    random_features: int = -1
    ngram_orders: int = -1
    ngram_buckets: int = -1
    ngram_dim: int = 64

    input_kind: str = _derived("features")
    target_kind: str = _derived("label")
    feature_dim: int = _derived(0)
    vocab_size: int = _derived(0)
    num_classes: int = _derived(0)
    feature_mean: tuple = _derived(())
    feature_std: tuple = _derived(())
    class_counts: tuple = _derived(())
    num_train_examples: int = _derived(0)
    reference_length: int = _derived(0)

    def __post_init__(self):
        # JSON gives lists; a frozen config must hold hashable tuples of plain numbers.
        for name, kind in (("feature_mean", float), ("feature_std", float), ("class_counts", float)):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(kind(v) for v in value))
        self._check_choice("cell", CELLS)
        self._check_choice("pooling", POOLING_NAMES + ("auto",))
        self._check_choice("head", HEAD_NAMES)
        self._check_choice("class_weighting", CLASS_WEIGHTINGS)
        self._check_choice("input_kind", INPUT_KINDS)
        self._check_choice("sequence_norm", SEQUENCE_NORMS)
        if self.conv_layers < -1 or self.conv_stride < -1 or self.conv_stride == 0:
            raise ValueError(f"conv_layers: expected >= 0 or -1 (auto), conv_stride: >= 1 or -1 "
                             f"(auto); got {self.conv_layers}, {self.conv_stride}")
        if self.random_features < -1:
            raise ValueError(f"random_features: expected >= 0 or -1 (auto), got {self.random_features}")
        if self.ngram_orders < -1:
            raise ValueError(f"ngram_orders: expected >= 0 or -1 (auto), got {self.ngram_orders}")
        if self.ngram_buckets != -1 and not 2 <= self.ngram_buckets <= 2 ** 18:
            raise ValueError(f"ngram_buckets: expected 2 .. {2 ** 18} or -1 (auto), got "
                             f"{self.ngram_buckets}")
        for name in ("conv_filters", "conv_kernel_size", "ngram_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if self.conv_stride > 1:
            if self.conv_stride & (self.conv_stride - 1):
                raise ValueError(f"conv_stride: expected a power of 2, got {self.conv_stride}")
            if self.conv_layers > 0 and self.conv_stride > MAX_STRIDE_PER_LAYER ** self.conv_layers:
                raise ValueError(
                    f"conv_stride={self.conv_stride} needs more than conv_layers={self.conv_layers} "
                    f"layers (at most stride {MAX_STRIDE_PER_LAYER} each)")
        self._check_choice("target_kind", TARGET_KINDS)
        if self.embedding_dim != -1 and self.embedding_dim < 1:
            raise ValueError(f"embedding_dim: expected an integer >= 1 or -1 (auto), got "
                             f"{self.embedding_dim!r}")
        for name in ("hidden_units", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        for name in ("feature_dim", "vocab_size", "num_classes", "num_train_examples",
                     "reference_length"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        for name in ("input_keep_prob", "state_keep_prob", "output_keep_prob", "update_keep_prob"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}: expected a keep probability in (0, 1], got {value!r}")
        if self.label_smoothing != -1 and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1) or -1 (auto), got "
                             f"{self.label_smoothing!r}")
        if self.head != "auto" and self.head not in _HEADS_FOR_TARGET[self.target_kind]:
            raise ValueError(
                f"head={self.head!r} cannot train on target_kind={self.target_kind!r}; expected one of "
                f"{('auto',) + _HEADS_FOR_TARGET[self.target_kind]}")
        if self.pooling == "attention" and self.resolved_head == "tagging":
            raise ValueError("pooling='attention' with a tagging head: the head reads per-step "
                             "outputs, so attention weights would never train; expected "
                             "pooling in ('last', 'mean', 'max')")
        if self.resolved_head == "tagging" and self.conv_layers > 0 and self.conv_stride > 1:
            raise ValueError(f"conv_stride={self.conv_stride} with a tagging head: the head needs "
                             f"one output per input step; expected conv_stride 1")
        if self.head == "binary" and self.num_classes not in (0, 2):
            raise ValueError(f"head='binary' needs exactly 2 classes, got num_classes={self.num_classes}")
        if self.feature_dim:
            for name in ("feature_mean", "feature_std"):
                values = getattr(self, name)
                if values and len(values) != self.feature_dim:
                    raise ValueError(
                        f"{name}: expected {self.feature_dim} values (feature_dim), got {len(values)}")
        if any(s <= 0 for s in self.feature_std):
            raise ValueError(f"feature_std: expected every value > 0, got {self.feature_std}")
        if self.class_counts and self.num_classes and len(self.class_counts) != self.num_classes:
            raise ValueError(
                f"class_counts: expected {self.num_classes} values (num_classes), "
                f"got {len(self.class_counts)}")

    def _check_choice(self, name: str, choices: Tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f"{name}: expected one of {choices}, got {value!r}")

    @property
    def resolved_head(self) -> str:
        """The head actually built: `head`, or the one "auto" picks from `target_kind`."""
        if self.head != "auto":
            return self.head
        if self.target_kind == "label":
            return "binary" if self.num_classes == 2 else "multiclass"
        return {"labels": "multilabel", "tags": "tagging"}[self.target_kind]

    @property
    def resolved_pooling(self) -> str:
        """The pooling actually built: `pooling`, or "mean" while "auto" is unresolved."""
        return "mean" if self.pooling == "auto" else self.pooling

    @property
    def resolved_embedding_dim(self) -> int:
        """The embedding width actually built: `embedding_dim`, or 64 while -1 is unresolved."""
        return 64 if self.embedding_dim == -1 else self.embedding_dim

    @property
    def resolved_label_smoothing(self) -> float:
        """The smoothing the loss uses: `label_smoothing`, or 0 while -1 is unresolved."""
        return 0.0 if self.label_smoothing == -1 else self.label_smoothing

    @property
    def conv_strides(self) -> Tuple[int, ...]:
        """Per-layer strides of the front end, () when there is none (or it is unresolved)."""
        if self.conv_layers <= 0:
            return ()
        total, strides = max(self.conv_stride, 1), []
        for _ in range(self.conv_layers):
            stride = min(total, MAX_STRIDE_PER_LAYER)
            strides.append(stride)
            total //= stride
        return tuple(strides)

    @property
    def uses_random_features(self) -> bool:
        """Whether a random-convolution branch is built (dense, sequence-level heads only)."""
        return (self.random_features > 0 and not self.uses_tokens
                and self.resolved_head != "tagging")

    @property
    def uses_ngram_bag(self) -> bool:
        """Whether a hashed n-gram bag is built (token inputs, sequence-level heads only)."""
        return self.ngram_orders > 0 and self.uses_tokens and self.resolved_head != "tagging"

    @property
    def uses_sequence_norm(self) -> bool:
        """Whether dense inputs are z-normalised per sequence."""
        return self.sequence_norm == "on" and not self.uses_tokens

    @property
    def uses_tokens(self) -> bool:
        """True when the model reads `token_ids` (and embeds them) instead of `features`."""
        return self.input_kind in ("tokens", "text")

    def check_buildable(self) -> None:
        """Raises ValueError unless the data-derived sizes needed to build a model are set."""
        if self.num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1 (set from the data spec), got {self.num_classes}")
        if self.uses_tokens and self.vocab_size < 2:
            raise ValueError(f"vocab_size: expected >= 2 for token inputs, got {self.vocab_size}")
        if not self.uses_tokens and self.feature_dim < 1:
            raise ValueError(f"feature_dim: expected >= 1 for dense inputs, got {self.feature_dim}")
        if self.resolved_head == "binary" and self.num_classes != 2:
            raise ValueError(f"head='binary' needs exactly 2 classes, got num_classes={self.num_classes}")
        if self.uses_ngram_bag and self.ngram_buckets < 2:
            raise ValueError(f"ngram_buckets: expected 2 .. {2 ** 18} for an n-gram bag of orders "
                             f"1..{self.ngram_orders}, got {self.ngram_buckets} (-1 is resolved by "
                             f"the trainer's rules)")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; unknown keys are an error (they usually mean a renamed field)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)


def hyperparameter_fields() -> Tuple[dataclasses.Field, ...]:
    """The fields that are flags (everything not marked derived), in declaration order."""
    return tuple(f for f in dataclasses.fields(ModelConfig) if not f.metadata.get("derived"))


def derived_fields() -> Tuple[dataclasses.Field, ...]:
    """The fields the trainer fills from the data spec."""
    return tuple(f for f in dataclasses.fields(ModelConfig) if f.metadata.get("derived"))
