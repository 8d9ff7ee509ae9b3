"""TFLite: builtins only, parity with the SavedModel at other batch sizes and lengths in a
process that never imports TensorFlow, quantization reported."""

import contextlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from export import tflite as tflite_lib
from export_testlib import VOCAB

pytestmark = pytest.mark.slow  # the shared exports (conftest.py)


def _ops(path):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return set(re.findall(r"Op#\d+ (\w+)", buffer.getvalue()))


def test_builtin_ops_only(dense_export, token_export):
    for export in (dense_export, token_export):
        for name in ("model.tflite", "model_quantized.tflite"):
            path = export.version_dir / "tflite" / name
            if path.exists():
                ops = _ops(path)
                assert "WHILE" in ops, ops
                assert not [op for op in ops if op.startswith("Flex") or "CUSTOM" in op], ops
                assert not {"VAR_HANDLE", "READ_VARIABLE"} & ops, ops  # weights are constants


def test_parity_without_tensorflow_at_two_batch_sizes_and_lengths(dense_export, dense_loaded, tmp_path):
    rng = np.random.default_rng(5)
    cases, expected = {}, {}
    serve = dense_loaded.signatures["serving_default"]
    for group, (batch, time) in {"serving_default:a": (2, 5), "serving_default:b": (7, 13)}.items():
        features = rng.normal(size=(batch, time, 12)).astype(np.float32)
        lengths = rng.integers(1, time + 1, batch).astype(np.int32)
        lengths[0] = time
        cases[f"{group}/in/features"], cases[f"{group}/in/lengths"] = features, lengths
        for key, value in serve(features=tf.constant(features), lengths=tf.constant(lengths)).items():
            if key != "classes":
                expected[f"{group}/out/{key}"] = value.numpy()
    np.savez(tmp_path / "cases.npz", **cases)
    np.savez(tmp_path / "expected.npz", **expected)
    folder = dense_export.version_dir / "tflite"
    report = tflite_lib.verify_tflite(str(tmp_path / "cases.npz"), str(tmp_path / "expected.npz"),
                                      str(folder / "model.tflite"))
    assert report["ok"] and report["tensorflow_imported"] is False
    assert report["max_diff"]["serving_default:b"]["batch_and_time"] == [7, 13]
    for group in ("serving_default:a", "serving_default:b"):
        assert report["max_diff"][group]["probabilities"] <= 1e-4
        assert report["max_diff"][group]["class_id_mismatches"] == 0


def test_parity_check_fails_when_outputs_differ(dense_export, tmp_path):
    cases = {"serving_default/in/features": np.zeros([1, 3, 12], np.float32),
             "serving_default/in/lengths": np.array([3], np.int32)}
    wrong = {"serving_default/out/logits": np.zeros([1, 9], np.float32),
             "serving_default/out/probabilities": np.full([1, 9], 0.5, np.float32),
             "serving_default/out/class_ids": np.zeros([1], np.int32)}
    np.savez(tmp_path / "cases.npz", **cases)
    np.savez(tmp_path / "wrong.npz", **wrong)
    result = subprocess.run([sys.executable, tflite_lib.VERIFY_SCRIPT, str(tmp_path / "cases.npz"),
                             str(tmp_path / "wrong.npz"),
                             str(dense_export.version_dir / "tflite" / "model.tflite")],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr


def _tflite_outputs(path, batches):
    """serving_default of a .tflite file on each batch: [{output name: array}]."""
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    return [runner(features=b["features"].numpy(), lengths=b["lengths"].numpy()) for b in batches]


def test_quantized_model_is_reported(dense_export):
    result = dense_export.result
    assert result["tflite_quantized_bytes"] < result["tflite_bytes"]
    assert result["quantized_size_ratio"] == result["tflite_quantized_bytes"] / result["tflite_bytes"]
    assert result["tflite_accuracy_examples"] == 48  # three held-out batches of 16
    assert result["quantized_accuracy_change"] == (result["tflite_accuracy_quantized"]
                                                   - result["tflite_accuracy_float"])
    # The reported numbers are the two files' on those held-out batches (the export's `batches`;
    # random labels, so the accuracies themselves say nothing about quantization).
    folder = dense_export.version_dir / "tflite"
    labels = np.concatenate([b["label"].numpy() for b in dense_export.batches])
    outputs = {name: _tflite_outputs(folder / f"{name}.tflite", dense_export.batches)
               for name in ("model", "model_quantized")}
    accuracy = {name: float(np.mean(np.concatenate([o["class_ids"] for o in out]) == labels))
                for name, out in outputs.items()}
    assert result["tflite_accuracy_float"] == pytest.approx(accuracy["model"])
    assert result["tflite_accuracy_quantized"] == pytest.approx(accuracy["model_quantized"])
    diff = max(float(np.abs(q["probabilities"] - f["probabilities"]).max())
               for f, q in zip(outputs["model"], outputs["model_quantized"]))
    assert result["tflite_quantized_max_probability_diff"] == pytest.approx(diff, abs=1e-6)
    assert 0.0 < diff < 0.1  # 8-bit weights move the probabilities, but not far


def test_token_tflite_ships_vocab_and_tokenization_note(token_export):
    folder = token_export.version_dir / "tflite"
    assert (folder / "labels.txt").read_text() == "neg\npos\n"
    assert (folder / "vocab.txt").read_text() == (token_export.version_dir / "assets" / "vocab.txt").read_text()
    note = (folder / "TOKENIZATION.md").read_text()
    assert "token_ids" in note and f"id {len(VOCAB) + 1}" in note  # the vocabulary, then OOV buckets
