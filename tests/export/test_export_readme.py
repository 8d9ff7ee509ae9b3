"""The commands and requests in export/README.md run against real exports."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from testlib import REPO_ROOT

pytestmark = pytest.mark.slow  # the shared exports, and saved_model_cli in subprocesses

README = (REPO_ROOT / "export" / "README.md").read_text()
SAVED_MODEL_CLI = str(pathlib.Path(sys.executable).with_name("saved_model_cli"))


def _block(marker):
    section = README.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    return re.search(r"```\w*\n(.*?)```", section, re.S).group(1)


def _run_cli(block, export_dir):
    command = block.replace("saved_model_cli ", f'"{SAVED_MODEL_CLI}" ', 1)
    env = dict(os.environ, EXPORT_DIR=str(export_dir))
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_saved_model_cli_dense_literal(dense_export):
    out = _run_cli(_block("saved-model-cli-dense"), dense_export.version_dir)
    for name in ("logits", "probabilities", "class_ids", "classes"):
        assert f"Result for output key {name}" in out, out[-2000:]


def test_saved_model_cli_text_literal(token_export):
    out = _run_cli(_block("saved-model-cli-text"), token_export.version_dir)
    assert "Result for output key classes" in out, out[-2000:]


def test_rest_request_json_runs_on_its_signature(dense_export, dense_loaded):
    request = json.loads(_block("rest-request"))
    inputs = {k: tf.constant(v, tf.float32 if k == "features" else tf.int32)
              for k, v in request["inputs"].items()}
    out = dense_loaded.signatures[request["signature_name"]](**inputs)
    assert out["logits"].shape == (2, 9) and out["classes"].shape == (2,)
    # The padded second step of row 2 is ignored: same answer as the row alone.
    alone = dense_loaded.signatures["serving_default"](
        features=inputs["features"][1:, :1], lengths=tf.constant([1]))
    np.testing.assert_allclose(out["logits"][1:], alone["logits"], atol=1e-5)


def test_tflite_python_snippet_runs_without_tensorflow(dense_export):
    code = (f"version_dir = {str(dense_export.version_dir)!r}\n" + _block("tflite-python") +
            "\nimport sys\nassert 'tensorflow' not in sys.modules\nprint('snippet ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd="/")
    assert result.returncode == 0 and "snippet ok" in result.stdout, result.stdout + result.stderr[-3000:]


def test_onnx_python_snippet_runs_without_tensorflow(dense_export):
    code = (f"version_dir = {str(dense_export.version_dir)!r}\n" + _block("onnx-python") +
            "\nimport sys\nassert 'tensorflow' not in sys.modules\nprint('snippet ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd="/")
    assert result.returncode == 0 and "snippet ok" in result.stdout, result.stdout + result.stderr[-3000:]
