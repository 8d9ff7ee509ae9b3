"""export/: turns a trained model and its data spec into what gets deployed, checked before it is.

`saved_model.py` writes one verified version (SavedModel + warmup + TFLite + weights; the
signatures are in `serving.py`, MC dropout in `uncertainty.py`); `verify_standalone.py` and
`verify_tflite.py` run in clean processes and import nothing of this package; `reexport.py`
(`python -m export`) re-exports a model dir's best checkpoint; `run_report.py` writes the run's
`report.html` (figures in `figures.py`). May import data/ (spec, tokenizer, pipeline) and
models/; never trainer/. See export/README.md.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

# `export.saved_model` and the format table (and with them TensorFlow) load on first use (PEP
# 562): `python -m export --help` answers without TensorFlow's start-up lines.
_LAZY = ("ExportOptions", "export_saved_model")


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    from export import saved_model

    value = getattr(saved_model, name)
    globals()[name] = value
    return value


SAMPLE_SIZE = 16
# Held-out examples the TFLite accuracy (float vs quantized) is measured on.
ACCURACY_EXAMPLES = 512
OOV_WORD = "zzoovzz"

__all__ = ["ExportOptions", "export_model", "export_saved_model", "options_from_train_config",
           "sample_batch", "texts_from_token_ids"]


def sample_batch(dataset, size: int = SAMPLE_SIZE) -> Dict[str, np.ndarray]:
    """The first batch of `dataset` (numpy), cut to `size` rows, for export checks."""
    batch = next(iter(dataset))
    return {key: value.numpy()[:size] for key, value in batch.items()}


def held_out_batches(dataset, examples: int = ACCURACY_EXAMPLES) -> List[Dict[str, np.ndarray]]:
    """Numpy batches of `dataset` until `examples` rows (the dataset may repeat forever)."""
    batches, seen = [], 0
    for batch in dataset:
        batches.append({key: value.numpy() for key, value in batch.items()})
        seen += len(batches[-1]["lengths"])
        if seen >= examples:
            break
    return batches


def texts_from_token_ids(token_ids: np.ndarray, lengths: np.ndarray, spec) -> List[str]:
    """Raw strings that the `text` signature turns back into (about) these token ids.

    Tokens are joined with spaces; out-of-vocabulary ids become a word outside the vocabulary.
    Exact when every vocabulary token survives `data.tokenizer.tokenize` unchanged (always for
    "text" data; "tokens" data may hold tokens the text tokenizer would split or lower-case).
    """
    vocab = spec.vocab
    known = set(vocab)
    oov = OOV_WORD
    while oov in known:
        oov += "z"
    texts = []
    for row, length in zip(token_ids, lengths):
        words = [vocab[i - 1] if 1 <= i <= len(vocab) else oov for i in row[: int(length)]]
        texts.append(" ".join(words))
    return texts


# TrainConfig field -> ExportOptions field: the run's export settings (its seed seeds the MC
# samples). A field the run does not have keeps ExportOptions' own default.
TRAIN_FIELDS = {"export_formats": "formats", "export_quantize": "quantize",
                "export_mc_samples": "mc_samples", "seed": "mc_seed"}


def options_from_train_config(train, **overrides) -> ExportOptions:
    """`ExportOptions` from a `TrainConfig`, or the "train" dict of a run's config.json."""
    values = train if isinstance(train, dict) else {name: getattr(train, name) for name in TRAIN_FIELDS
                                                    if hasattr(train, name)}
    options = {TRAIN_FIELDS[name]: value for name, value in values.items() if name in TRAIN_FIELDS}
    if "formats" in options:
        options["formats"] = tuple(f for f in str(options["formats"]).split(",") if f)
    options.update(overrides)
    from export.saved_model import ExportOptions

    return ExportOptions(**options)


def export_model(model, spec, config, sample_dataset, *, options: Optional[ExportOptions] = None,
                 texts: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Exports in every format `config.train.export_formats` names; returns paths and checks.

    Args:
      model: the trained `SequenceClassifier`.
      spec: its `DataSpec` (assets in `<config.train.model_dir>/assets/`).
      config: the run's config (`config.model.resolved_head`, `config.train.model_dir`,
        `config.train.export_dir`, the `export_*` fields of `config.train`).
      sample_dataset: held-out batches (eval or test); the first checks every signature, up to
        `ACCURACY_EXAMPLES` rows measure TFLite accuracy.
      options: overrides the options read from `config.train`.
      texts: raw strings for the `text` signature (token data); default: rebuilt from the
        sample's token ids through the vocabulary.

    Returns:
      A flat dict (see `export_saved_model`); empty when `export_formats` is empty.
    """
    options = options or options_from_train_config(config.train)
    if not options.formats:
        return {}
    sample = sample_batch(sample_dataset)
    if spec.is_tokens and texts is None:
        texts = texts_from_token_ids(sample["token_ids"], sample["lengths"], spec)
    from export.formats import requested
    from export.saved_model import export_saved_model

    accuracy = (held_out_batches(sample_dataset) if requested(options.formats)
                else [])
    return export_saved_model(
        model, spec, config.model.resolved_head, config.train.model_dir, config.train.export_dir,
        sample, texts=texts, options=options, accuracy_batches=accuracy)
