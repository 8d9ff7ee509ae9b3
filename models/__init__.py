"""Sequence classifiers: config, recurrent encoder (`models.rnn`), pooling, heads, losses, metrics.

`models/` depends only on TensorFlow/Keras (and TFP for metrics): it never reads files and never
imports `data`, `trainer` or `export`. Everything data-dependent arrives through `ModelConfig`.
"""

from models.classifier import SequenceClassifier, build_model
from models.config import ModelConfig
from models.heads import HEADS, class_ids, prior_bias, probabilities
from models.losses import class_weights_from_counts, compute_loss, loss_terms
from models.metrics import EvalMetrics
from models.pooling import POOLINGS

__all__ = [
    "HEADS",
    "POOLINGS",
    "EvalMetrics",
    "ModelConfig",
    "SequenceClassifier",
    "build_model",
    "class_ids",
    "class_weights_from_counts",
    "compute_loss",
    "loss_terms",
    "prior_bias",
    "probabilities",
]
