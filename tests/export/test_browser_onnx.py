"""The exported model.onnx in a web page: `export/web/index.html` with onnxruntime-web
(WebAssembly) in headless Chromium, driven by `export/web/run_browser.mjs`.

The page's logits must match onnxruntime's in Python, it must draw one row per sequence with
the class named by labels.txt, and the run must log no console error. Needs Node.js and
Chromium (`.ci/run` installs Chromium): without them these tests fail with the install hint
rather than skip, because a browser path that is never run is not verified.
"""

import numpy as np
import onnxruntime as ort
import pytest

from export import browser_check

pytestmark = pytest.mark.slow  # headless Chromium on the shared exports


def _inputs(export, sequences=6, seed=3):
    """Sequences of lengths 1 .. 14 (one of length 1), zeros past each length."""
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 14, 5, 9, 2, 12][:sequences], np.int32)
    time = int(lengths.max())
    real = np.arange(time)[None, :] < lengths[:, None]
    if export.spec.is_tokens:
        ids = rng.integers(1, export.spec.vocab_size, (sequences, time))
        return {"token_ids": np.where(real, ids, 0).astype(np.int32), "lengths": lengths}
    x = rng.normal(size=(sequences, time, export.spec.feature_dim))
    return {"features": np.where(real[..., None], x, 0).astype(np.float32), "lengths": lengths}


def _onnxruntime(model_path, inputs):
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = ["logits", "probabilities"]
    return dict(zip(names, session.run(names, inputs)))


@pytest.mark.parametrize("which", ["dense_export", "token_export"])
def test_page_classifies_like_onnxruntime(which, request):
    export = request.getfixturevalue(which)
    onnx_dir = export.version_dir / "onnx"
    inputs = _inputs(export)
    report = browser_check.run_in_browser(str(onnx_dir), inputs)
    assert report["ok"], report["errors"]
    assert report["errors"] == [] and report["status"] == "classified 6 sequences"
    expected = _onnxruntime(str(onnx_dir / "model.onnx"), inputs)
    for name in ("logits", "probabilities"):
        np.testing.assert_allclose(report["outputs"][name], expected[name], atol=1e-4, rtol=0)
    labels = (onnx_dir / "labels.txt").read_text().splitlines()
    assert report["rows_rendered"] == 6
    assert [row["class"] for row in report["rows"]] == [labels[i] for i in expected["logits"].argmax(-1)]
    assert [row["length"] for row in report["rows"]] == inputs["lengths"].tolist()


def test_a_console_error_fails_the_check(dense_export):
    inputs = _inputs(dense_export)
    del inputs["lengths"]
    report = browser_check.run_in_browser(str(dense_export.version_dir / "onnx"), inputs)
    assert not report["ok"]
    assert any("input lengths missing" in error for error in report["errors"]), report["errors"]
    assert report["rows_rendered"] == 0


def test_a_missing_model_fails_the_check(dense_export, tmp_path):
    report = browser_check.run_in_browser(str(tmp_path), _inputs(dense_export))
    assert not report["ok"]
    assert any("model.onnx" in error for error in report["errors"]), report["errors"]
