"""Re-export a model dir's best checkpoint without retraining (`python -m export`).

Rebuilds the model from `<model_dir>/config.json` (its "model" section, through
`ModelConfig.from_dict`) and the spec from `<model_dir>/assets/` (`DataSpec.load`), restores
`<model_dir>/best/` (or, without one, the newest of `<model_dir>/checkpoints/`), and exports
with held-out examples from `<model_dir>/prepared/eval-*` (else test-*, else train-*).
Reads config.json as plain JSON: export/ never imports trainer/. Then rewrites
`<model_dir>/report.html` with the new export (`export/run_report.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Dict

import tensorflow as tf

from data.config import DataConfig
from data.pipeline import make_dataset
from data.prepare import prepared_dir
from data.spec import ASSETS_DIR, DataSpec
from export import held_out_batches, options_from_train_config, sample_batch, texts_from_token_ids
from export import vertex_env
from export.formats import requested
from export.run_report import try_write_report
from export.saved_model import export_saved_model
from models import ModelConfig, build_model

logger = logging.getLogger(__name__)
CONFIG_FILE = "config.json"


def load_model(model_dir: str):
    """(model with restored weights, spec, config dict, checkpoint path) of a model dir."""
    with tf.io.gfile.GFile(tf.io.gfile.join(model_dir, CONFIG_FILE)) as f:
        config = json.load(f)
    spec = DataSpec.load(model_dir)
    if spec is None:
        raise FileNotFoundError(f"{model_dir} has no {ASSETS_DIR}/data_spec.json: not a trained model dir")
    model = build_model(ModelConfig.from_dict(config["model"]))
    path = (tf.train.latest_checkpoint(tf.io.gfile.join(model_dir, "best"))
            or tf.train.latest_checkpoint(tf.io.gfile.join(model_dir, "checkpoints")))
    if not path:
        raise FileNotFoundError(f"no checkpoint in {model_dir}/best or {model_dir}/checkpoints")
    # Every model variable must come from the checkpoint; optimizer slots etc. may stay unread.
    status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(f"checkpoint {path} does not hold this model's weights (config.json "
                         f"and checkpoint disagree), so it cannot be re-exported: {error}"[:2000])
    check_checkpoint_complete(model, path)
    return model, spec, config, path


def check_checkpoint_complete(model, path: str) -> None:
    """Raises ValueError when the checkpoint holds fewer model weights than the model has.

    `assert_existing_objects_matched` only sees variables the object graph reaches: weights a
    layer keeps out of Keras' tracking are neither saved nor missed, and the export would
    silently carry their fresh initial values.
    """
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
             and ".OPTIMIZER_SLOT" not in name]
    expected = len(model.trainable_variables)
    if len(saved) < expected:
        raise ValueError(
            f"checkpoint {path} holds {len(saved)} model variables but the model has {expected} "
            f"trainable ones: some weights were never saved (untracked by the checkpoint), so "
            f"this checkpoint cannot be re-exported")


def held_out_files(model_dir: str):
    folder = prepared_dir(model_dir)
    for split in ("eval", "test", "train"):
        files = sorted(tf.io.gfile.glob(tf.io.gfile.join(folder, f"{split}-*")))
        if files:
            return files
    raise FileNotFoundError(f"no prepared examples in {folder} to check the export with")


def reexport(model_dir: str, export_dir: str = "", **option_overrides) -> Dict[str, object]:
    """Exports `model_dir`'s best checkpoint; returns the dict `export_saved_model` returns.

    export_dir: default `$AIP_MODEL_DIR`, else the run's `train.export_dir`, else
    `<model_dir>/export`. option_overrides: `ExportOptions` fields (formats, quantize, ...).
    """
    model, spec, config, checkpoint = load_model(model_dir)
    train = config.get("train", {})
    export_dir = (export_dir or vertex_env.model_dir() or train.get("export_dir", "")
                  or tf.io.gfile.join(model_dir, "export"))
    known = {f.name for f in dataclasses.fields(DataConfig)}
    data_values = config.get("data", {})
    unknown = sorted(set(data_values) - known)
    if unknown:  # a run of another version of the package: its other fields still apply
        logger.warning("%s: config.json's data fields %s are not DataConfig fields of this version; "
                       "ignored", model_dir, unknown)
    data_config = DataConfig(**{k: v for k, v in data_values.items() if k in known})
    dataset = make_dataset(held_out_files(model_dir), spec, data_config, training=False,
                           seed=int(train.get("seed", 0)))
    options = options_from_train_config(train, **option_overrides)
    sample = sample_batch(dataset)
    texts = (texts_from_token_ids(sample["token_ids"], sample["lengths"], spec)
             if spec.is_tokens else None)
    result = export_saved_model(
        model, spec, model.model_config.resolved_head, model_dir, export_dir, sample, texts=texts,
        options=options, accuracy_batches=held_out_batches(dataset) if requested(options.formats) else ())
    result["checkpoint"] = checkpoint
    result["report"] = try_write_report(model_dir, result)
    return result
