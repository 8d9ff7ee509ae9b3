"""Writes a SavedModel version TF Serving can load, verified before it is published.

Layout: `<export_dir>/<integer version>/{saved_model.pb, variables/, assets/}` with versions
increasing. The version is written under a temporary name, verified in a fresh process
(`verify_standalone.py`, which imports only TensorFlow), and renamed into place only then, so a
server watching `export_dir` never sees a half-written or broken version.
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Dict

import numpy as np
import tensorflow as tf

from data.spec import ASSETS_DIR, LABELS_FILE, VOCAB_FILE
from export.serving import ServingModule

# A file of this package, run by path so that the check never imports the package itself.
VERIFY_SCRIPT = str(pathlib.Path(__file__).with_name("verify_standalone.py"))


def next_version(export_dir: str) -> int:
    """A version number above every existing one and no smaller than the current Unix time."""
    existing = [int(name.rstrip("/")) for name in (tf.io.gfile.listdir(export_dir)
                if tf.io.gfile.exists(export_dir) else []) if name.rstrip("/").isdigit()]
    return max([int(time.time())] + [version + 1 for version in existing])


def expected_cases(module: ServingModule, signatures, sample: Dict[str, np.ndarray],
                   texts=None) -> Dict[str, np.ndarray]:
    """Runs each signature in memory on `sample` and records inputs and outputs for the check."""
    cases = {}
    for name, function in signatures.items():
        names = [spec.name for spec in function.structured_input_signature[0]]
        if name == "text":
            if texts is None:
                continue
            inputs = {"text": np.asarray(texts, dtype=object).astype(bytes)}
        else:
            inputs = {key: sample[key] for key in names}
        outputs = function(*[tf.constant(inputs[key]) for key in names])
        for key, value in inputs.items():
            cases[f"{name}/in/{key}"] = _storable(np.asarray(value))
        for key, value in outputs.items():
            cases[f"{name}/out/{key}"] = _storable(value.numpy())
    return cases


def _storable(array: np.ndarray) -> np.ndarray:
    """String tensors come back as object arrays; store them as fixed-width bytes (no pickle)."""
    return array.astype(bytes) if array.dtype == object else array


def verify(saved_model_dir: str, cases: Dict[str, np.ndarray], tolerance: float = 1e-5) -> Dict:
    """Checks the SavedModel in a fresh Python process; raises RuntimeError if it fails."""
    scratch = tempfile.mkdtemp(prefix="seqtrain-verify-")
    cases_path = tf.io.gfile.join(scratch, "cases.npz")
    buffer = io.BytesIO()
    np.savez(buffer, **cases)
    with tf.io.gfile.GFile(cases_path, "wb") as f:
        f.write(buffer.getvalue())
    result = subprocess.run(
        [sys.executable, VERIFY_SCRIPT, saved_model_dir, cases_path, str(tolerance)],
        capture_output=True, text=True, check=False)
    tf.io.gfile.rmtree(scratch)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"exported SavedModel {saved_model_dir} failed verification:\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


def export_saved_model(model, spec, head: str, model_dir: str, export_dir: str,
                       sample: Dict[str, np.ndarray], texts=None) -> Dict[str, object]:
    """Writes, verifies and publishes one SavedModel version; returns its path and check results.

    Args:
      model: the trained classifier (called as `model(inputs, training=False)` -> logits).
      spec: the `DataSpec`; its asset files in `<model_dir>/assets/` are copied into the export.
      head: the head name ("multiclass", "binary", "multilabel", "tagging").
      sample: a batch of held-out inputs (numpy), used to check the export against the model.
      texts: raw strings for the `text` signature check (token data only).
    """
    tf.io.gfile.makedirs(export_dir)
    version = next_version(export_dir)
    final_dir = tf.io.gfile.join(export_dir, str(version))
    temp_dir = tf.io.gfile.join(export_dir, f"tmp-{version}")
    vocab_path = tf.io.gfile.join(model_dir, ASSETS_DIR, VOCAB_FILE) if spec.is_tokens else ""
    module = ServingModule(model, spec, head, vocab_path)
    signatures = module.signatures()
    tf.saved_model.save(module, temp_dir, signatures=signatures)
    labels_copy = tf.io.gfile.join(temp_dir, "assets", LABELS_FILE)
    tf.io.gfile.makedirs(tf.io.gfile.join(temp_dir, "assets"))
    tf.io.gfile.copy(tf.io.gfile.join(model_dir, ASSETS_DIR, LABELS_FILE), labels_copy, overwrite=True)
    cases = expected_cases(module, signatures, sample, texts)
    try:
        check = verify(temp_dir, cases)
    except RuntimeError:
        logging.error("verification failed; the unverified export stays at %s for inspection", temp_dir)
        raise
    tf.io.gfile.rename(temp_dir, final_dir)
    logging.info("exported and verified %s: %s", final_dir, check["signatures"])
    return {"saved_model": final_dir, "verified": check["ok"], "signatures": sorted(signatures)}
