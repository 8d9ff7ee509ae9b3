"""Loads an exported SavedModel in a clean process and checks it against expected outputs.

Run as a script (`python verify_standalone.py SAVED_MODEL_DIR CASES.npz`), never imported by
the trainer: it needs only TensorFlow and NumPy, the way TF Serving needs only the SavedModel.
`CASES.npz` holds, for each signature S, inputs `S/in/<name>` and expected outputs
`S/out/<name>`. Prints one JSON line: the signatures checked and the largest differences.
Exits 1 if any output differs by more than the tolerance or a signature is missing.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def main(saved_model_dir: str, cases_path: str, tolerance: float = 1e-5) -> int:
    loaded = tf.saved_model.load(saved_model_dir)
    with tf.io.gfile.GFile(cases_path, "rb") as f:
        cases = dict(np.load(f, allow_pickle=False))
    signatures = sorted({key.split("/")[0] for key in cases})
    report = {"signatures": {}, "ok": True}
    for name in signatures:
        if name not in loaded.signatures:
            report["ok"] = False
            report["signatures"][name] = "missing"
            continue
        function = loaded.signatures[name]
        inputs = {key.split("/")[2]: tf.constant(value) for key, value in cases.items()
                  if key.startswith(name + "/in/")}
        outputs = function(**inputs)
        diffs = {}
        for key, expected in cases.items():
            if not key.startswith(name + "/out/"):
                continue
            output = key.split("/")[2]
            got = outputs[output].numpy()
            if expected.dtype.kind in "SUO":
                same = np.array_equal(got.astype(expected.dtype), expected)
                diffs[output] = 0.0 if same else float("inf")
            else:
                diffs[output] = float(np.max(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
            if not diffs[output] <= tolerance:
                report["ok"] = False
        report["signatures"][name] = diffs
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5))
