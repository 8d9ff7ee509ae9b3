"""ONNX: `<version>/onnx/model.onnx` beside the TFLite file, and its check.

Written from the same arrays and manifest as `weights/` (`export.weights.weight_arrays`), by
`export/onnx_graph.py` with the `onnx` package's helpers; `labels.txt` (and for token data
`vocab.txt` + `TOKENIZATION.md`) beside it. Checked by `verify_onnx.py` in a process with
onnxruntime and without TensorFlow. A model ONNX cannot express (`UnsupportedForOnnx`) is
skipped with its reason in the result, not failed.
"""

from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys
from typing import Dict

import tensorflow as tf

from export.parity import largest_diff
from export.tflite import write_labels_and_vocab

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
VERIFY_SCRIPT = str(pathlib.Path(__file__).with_name("verify_onnx.py"))


REPORT_ROWS = (
    ("onnx", "ONNX model"), ("onnx_bytes", "ONNX size"),
    ("onnx_verified", "ONNX verified (onnxruntime, no TensorFlow)"),
    ("onnx_max_diff", "ONNX max |diff| vs SavedModel"),
    ("onnx_padding_max_diff", "ONNX max |diff| with garbage past the lengths"),
    ("onnx_accuracy", "ONNX accuracy"), ("onnx_latency_ms_batch1", "ONNX latency, batch 1 (ms)"),
    ("onnx_skipped", "ONNX skipped"),
)


def write_format(context) -> Dict[str, object]:
    """The `onnx` entry of `export.formats`: writes `onnx/` into the version folder."""
    return write_onnx(context.arrays, context.manifest, context.spec, context.version_dir,
                      context.vocab_path)


def verify_format(context) -> Dict[str, object]:
    """The `onnx` entry's check (see `verify_onnx.py`); raises RuntimeError on failure."""
    local = str(pathlib.Path(context.scratch) / MODEL_FILE)
    tf.io.gfile.copy(tf.io.gfile.join(context.version_dir, ONNX_DIR, MODEL_FILE), local,
                     overwrite=True)
    checked = verify_onnx(context.cases_path, context.outputs_path, local,
                          context.options.tflite_tolerance)
    result: Dict[str, object] = {
        "onnx_verified": checked["ok"],
        "onnx_max_diff": largest_diff(checked["max_diff"]),
        "onnx_padding_max_diff": checked["padding_max_diff"]}
    for key in ("accuracy", "accuracy_examples", "latency_ms_batch1"):
        if key in checked:
            result[f"onnx_{key}"] = checked[key]
    return result


def write_onnx(arrays, manifest, spec, version_dir: str, vocab_path: str = "") -> Dict[str, object]:
    """Builds and writes `onnx/model.onnx` (+ labels, vocabulary); returns its path and size, or
    {"onnx_skipped": reason} when the model has a part ONNX cannot express."""
    from export.onnx_graph import UnsupportedForOnnx, build_onnx  # the `onnx` extra

    try:
        model = build_onnx(arrays, manifest, feature_dim=0 if spec.is_tokens else spec.feature_dim)
    except UnsupportedForOnnx as error:
        logging.warning("ONNX export skipped: %s", error)
        return {"onnx_skipped": str(error)}
    folder = tf.io.gfile.join(version_dir, ONNX_DIR)
    tf.io.gfile.makedirs(folder)
    content = model.SerializeToString()
    path = tf.io.gfile.join(folder, MODEL_FILE)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)
    write_labels_and_vocab(folder, spec, vocab_path)
    return {"onnx": path, "onnx_bytes": len(content)}


def verify_onnx(cases_path: str, expected_path: str, model_path: str,
                tolerance: float = 1e-4) -> Dict[str, object]:
    """Runs `verify_onnx.py` in a fresh process (onnxruntime, no TensorFlow); raises
    RuntimeError with its output on failure."""
    command = [sys.executable, VERIFY_SCRIPT, cases_path, expected_path, model_path,
               "--tolerance", str(tolerance)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"ONNX model {model_path} failed verification:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])
