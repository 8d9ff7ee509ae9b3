"""Sequence classifiers: config, recurrent encoder (`models.rnn`), pooling, heads, losses, metrics.

`models/` depends only on TensorFlow/Keras (and TFP for metrics): it never reads files and never
imports `data`, `trainer` or `export`. Everything data-dependent arrives through `ModelConfig`.
"""

import importlib

# Loaded on first use (PEP 562), so that `models.config` (the flags) imports without TensorFlow:
# `python -m trainer.task --help` stays fast.
_EXPORTS = {
    "models.classifier": ("SequenceClassifier", "build_model"),
    "models.config": ("ModelConfig",),
    "models.heads": ("HEADS", "class_ids", "prior_bias", "probabilities"),
    "models.losses": ("class_weights_from_counts", "compute_loss", "loss_terms"),
    "models.metrics": ("EvalMetrics",),
    "models.pooling": ("POOLINGS",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value
