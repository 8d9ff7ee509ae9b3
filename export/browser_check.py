"""Runs an exported `onnx/model.onnx` in headless Chromium with onnxruntime-web (`export/web/`).

    python export/browser_check.py VERSION_DIR [--sequences 4] [--max-length 20]

classifies a few random sequences of the model's input shape in the page, compares the
page's logits with onnxruntime's in Python (when installed) and prints one JSON line; exit
status 1 on any console error, page error, failed request or mismatch. Needs Node.js (npm) and
Chromium (`apt-get install chromium`, or CHROMIUM=path); `npm ci` runs in `export/web/` on
first use. Run as a script it imports no TensorFlow (only NumPy, onnx and onnxruntime; the
`export` package's own import loads TensorFlow).

`run_in_browser(model_dir, inputs)` is the same for given inputs (used by
tests/export/test_browser_onnx.py).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

WEB_DIR = pathlib.Path(__file__).resolve().parent / "web"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TOLERANCE = 1e-4


class BrowserUnavailable(RuntimeError):
    """Node.js, npm or Chromium is missing."""


def find_chromium() -> str:
    """CHROMIUM, else the first Chromium on PATH; BrowserUnavailable with the install hint."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable("no Chromium found (tried CHROMIUM and " + ", ".join(CHROMIUM_NAMES)
                             + "): apt-get install chromium, or set CHROMIUM to its path")


def ensure_node_modules(web_dir: pathlib.Path = WEB_DIR) -> None:
    """`npm ci` in `web_dir` unless its node_modules already match package-lock.json."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise BrowserUnavailable("node and npm are needed for the browser check (apt-get install nodejs npm)")
    installed = web_dir / "node_modules" / ".package-lock.json"
    lock = web_dir / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=web_dir,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BrowserUnavailable(f"npm ci in {web_dir} failed: {done.stderr.strip()[-2000:]}")


def _tensor_json(value: np.ndarray) -> Dict[str, object]:
    kind = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32"}.get(value.dtype)
    if kind is None:
        raise ValueError(f"input dtype {value.dtype}: expected float32 or int32")
    return {"type": kind, "dims": list(value.shape), "data": value.ravel().tolist()}


def run_in_browser(model_dir: str, inputs: Dict[str, np.ndarray], timeout_s: float = 180.0) -> Dict[str, object]:
    """The page's report for `inputs` (name -> array, float32/int32) on `model_dir/model.onnx`.

    Returns run_browser.mjs's report: ok, errors, console, status, rows_rendered, and
    `outputs` (name -> numpy array) and `rows` (one dict per sequence) when it classified.
    """
    ensure_node_modules()
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        cases = pathlib.Path(tmp) / "cases.json"
        cases.write_text(json.dumps({"inputs": {k: _tensor_json(np.asarray(v)) for k, v in inputs.items()}}))
        out = pathlib.Path(tmp) / "result.json"
        done = subprocess.run(
            ["node", str(WEB_DIR / "run_browser.mjs"), "--model-dir", str(model_dir), "--cases", str(cases),
             "--out", str(out), "--chromium", chromium, "--timeout-ms", str(int(timeout_s * 1000))],
            capture_output=True, text=True, timeout=timeout_s + 60)
        if not out.exists():
            raise RuntimeError(f"run_browser.mjs exited {done.returncode} without a report: "
                               f"{done.stderr.strip()[-2000:]}")
        report = json.loads(out.read_text())
    result = report.pop("result") or {}
    report["outputs"] = {name: np.asarray(t["data"], np.float64).reshape(t["dims"])
                         for name, t in (result.get("outputs") or {}).items()}
    report["rows"] = result.get("rows") or []
    return report


def random_inputs(model_path: str, sequences: int, max_length: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random sequences with the model's own input names and feature width; token ids are
    drawn from 1..3 (every vocabulary holds them: 0 is padding)."""
    import onnx  # the model's declared inputs

    graph = onnx.load(model_path).graph
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_length + 1, sequences).astype(np.int32)
    time = int(lengths.max())
    real = np.arange(time)[None, :] < lengths[:, None]
    inputs = {"lengths": lengths}
    for value in graph.input:
        if value.name == "features":
            width = value.type.tensor_type.shape.dim[2].dim_value
            x = rng.normal(size=(sequences, time, width)).astype(np.float32)
            inputs["features"] = np.where(real[..., None], x, 0).astype(np.float32)
        elif value.name == "token_ids":
            inputs["token_ids"] = np.where(real, rng.integers(1, 4, (sequences, time)), 0).astype(np.int32)
    return inputs


def compare_with_onnxruntime(model_path: str, inputs: Dict[str, np.ndarray],
                             outputs: Dict[str, np.ndarray]) -> Optional[float]:
    """Largest |browser - onnxruntime| over logits and probabilities; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names: List[str] = ["logits", "probabilities"]
    expected = dict(zip(names, session.run(names, inputs)))
    return max(float(np.max(np.abs(outputs[n] - expected[n]))) for n in names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version_dir", help="an export's version folder (holds onnx/model.onnx)")
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=20)
    args = parser.parse_args(argv)
    model_dir = pathlib.Path(args.version_dir) / "onnx"
    model_path = str(model_dir / "model.onnx")
    inputs = random_inputs(model_path, args.sequences, args.max_length)
    report = run_in_browser(str(model_dir), inputs)
    max_diff = compare_with_onnxruntime(model_path, inputs, report["outputs"]) if report["outputs"] else None
    ok = bool(report["ok"]) and (max_diff is None or max_diff <= TOLERANCE)
    print(json.dumps({"ok": ok, "errors": report["errors"], "status": report["status"],
                      "rows": report["rows"], "max_diff_vs_onnxruntime": max_diff}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
