"""Batch prediction with an exported version, the way Vertex AI batch prediction uses it:

    python -m trainer.predict --model EXPORT/1712345678 --data 'new-*.jsonl' --output preds.jsonl \
        [--uncertainty] [--batch-size 64]

Needs only the export version folder: the data spec is rebuilt from its assets
(`DataSpec.load(version_dir)` reads `assets/data_spec.json`, `labels.txt`, `vocab.txt`), the
files are validated and prepared against it (`data.prepare.prepare_files`; targets optional)
and batched by `data.pipeline.make_dataset`, and the SavedModel's signatures do the rest.
Writes one JSON line per record, in input order within each prepared shard:

  {"id": ..., "class": ..., "probabilities": [...]}                      (+ with --uncertainty:
   "predictive_entropy", "expected_entropy", "mutual_information", from the `uncertainty`
   signature, whose "probabilities" are then the Monte-Carlo mean)

"class" is the label string (multilabel: the list of present labels; tagging: one per real
step); "probabilities" follow `labels.txt` order (binary: [p(class 0), p(class 1)]; tagging:
one list per real step).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Dict, Iterator, List

import numpy as np
import tensorflow as tf

from data.config import DataConfig
from data.pipeline import make_dataset
from data.prepare import prepare_files
from data.spec import DataSpec
from export.weights import MANIFEST_FILE

UNCERTAINTY_FIELDS = ("predictive_entropy", "expected_entropy", "mutual_information")


def _rows(outputs: Dict[str, np.ndarray], ids: np.ndarray, lengths: np.ndarray, spec: DataSpec,
          head: str, uncertainty: bool) -> Iterator[dict]:
    for i, record_id in enumerate(ids):
        probabilities = outputs["probabilities"][i]
        if head == "binary":
            probabilities = np.array([1.0 - probabilities[0], probabilities[0]])
        classes = outputs["classes"][i]
        row = {"id": record_id.decode("utf-8")}
        if head == "tagging":
            n = int(lengths[i])
            row["class"] = [c.decode("utf-8") for c in classes[:n]]
            row["probabilities"] = probabilities[:n].tolist()
        elif head == "multilabel":
            row["class"] = [c.decode("utf-8") for c in classes if c]
            row["probabilities"] = probabilities.tolist()
        else:
            row["class"] = classes.decode("utf-8")
            row["probabilities"] = probabilities.tolist()
        if uncertainty:
            for name in UNCERTAINTY_FIELDS:
                value = outputs[name][i]
                row[name] = value[: int(lengths[i])].tolist() if head == "tagging" else value.tolist()
        yield row


def recorded_head(version_dir: str) -> str:
    """The head an export version records in `weights/weights.json` ("" if it has none)."""
    path = tf.io.gfile.join(version_dir, "weights", MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("head", "")


def head_of(spec: DataSpec, logits_width: int) -> str:
    """The head of an export that does not record it (an earlier version's), from its data
    spec and logits width."""
    if spec.target_kind == "tags":
        return "tagging"
    if spec.target_kind == "labels":
        return "multilabel"
    return "binary" if logits_width == 1 else "multiclass"


def predict(model_dir: str, patterns: str, output: str, uncertainty: bool = False,
            batch_size: int = 64) -> int:
    """Writes predictions for every record matched by `patterns`; returns the number written."""
    spec = DataSpec.load(model_dir)
    if spec is None:
        raise FileNotFoundError(f"{model_dir} has no assets/data_spec.json: not a seqtrain export version")
    loaded = tf.saved_model.load(model_dir)
    signature = loaded.signatures["uncertainty" if uncertainty else "serving_default"]
    head = recorded_head(model_dir) or head_of(
        spec, int(loaded.signatures["serving_default"].structured_outputs["logits"].shape[-1]))
    config = DataConfig(batch_size=batch_size, max_length=spec.max_length, lowercase=spec.lowercase,
                        num_oov_buckets=spec.num_oov_buckets)
    input_key = "token_ids" if spec.is_tokens else "features"
    written = 0
    with tempfile.TemporaryDirectory(prefix="seqtrain-predict-") as scratch:
        info = prepare_files(patterns, spec, config, scratch, split="predict", require_targets=False)
        dataset = make_dataset(info.files, spec, config, training=False, seed=0, with_targets=False)
        with tf.io.gfile.GFile(output, "w") as f:
            for batch in dataset:
                outputs = signature(**{input_key: batch[input_key], "lengths": batch["lengths"]})
                outputs = {key: value.numpy() for key, value in outputs.items()}
                for row in _rows(outputs, batch["id"].numpy(), batch["lengths"].numpy(), spec, head,
                                 uncertainty):
                    f.write(json.dumps(row) + "\n")
                    written += 1
    return written


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an export version folder (<export_dir>/<version>)")
    parser.add_argument("--data", required=True, help="comma-separated file globs (targets optional)")
    parser.add_argument("--output", required=True, help="JSON Lines file to write")
    parser.add_argument("--uncertainty", action="store_true", help="MC dropout uncertainty fields")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    count = predict(args.model, args.data, args.output, args.uncertainty, args.batch_size)
    print(f"wrote {count} predictions to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
