"""Checks an exported ONNX model in a clean process that never imports TensorFlow.

    python verify_onnx.py CASES.npz EXPECTED.npz MODEL.onnx [--tolerance 1e-4]

Only NumPy and `onnxruntime` (what a C#, Java or Python service would ship) are imported; the
script fails if TensorFlow got imported anyway. Case groups are those of `verify_tflite.py`:

* every `serving_default` group G (G/in/<name>, its own batch size and length): `logits`,
  `probabilities` must match EXPECTED.npz (G/out/<name>, the SavedModel's outputs) within the
  tolerance; `class_ids` mismatches are counted (a tie within the tolerance may flip one);
* padding invariance on the same groups: the inputs past each length are replaced by garbage
  (NaN for features, out-of-range ids for tokens) and 3 more garbage steps are appended; the
  outputs must not move by more than the tolerance (tagging: over the original steps);
* `accuracy:<k>` groups (with G/target/...): the model's accuracy on them;
* latency: the first sequence of the first group alone (batch 1, its own length), median of
  repeated runs in milliseconds, onnxruntime's default threads.

Prints one JSON line; exit status 1 on failure.
"""

import argparse
import io
import json
import sys
import time

import numpy as np
import onnxruntime as ort

OUTPUTS = ("logits", "probabilities", "class_ids")
GARBAGE_STEPS = 3
GARBAGE_ID = 2 ** 30
LATENCY_RUNS = 50


def load_npz(path):
    with open(path, "rb") as f:
        return dict(np.load(io.BytesIO(f.read()), allow_pickle=False))


def groups(cases, prefix):
    return sorted({k.split("/")[0] for k in cases if k.split("/")[0].split(":")[0] == prefix})


def inputs_of(cases, group):
    return {k.split("/")[2]: v for k, v in cases.items() if k.startswith(group + "/in/")}


def run(session, inputs):
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def with_garbage(inputs):
    """The same inputs with every step past each length (and 3 appended steps) garbage."""
    lengths = inputs["lengths"]
    out = dict(inputs)
    for name, value in inputs.items():
        if name == "lengths":
            continue
        pad = [(0, 0), (0, GARBAGE_STEPS)] + [(0, 0)] * (value.ndim - 2)
        value = np.pad(value, pad)
        past = np.arange(value.shape[1])[None, :] >= lengths[:, None]
        if value.dtype.kind == "f":
            value[past] = np.nan
        else:
            value[past] = GARBAGE_ID
        out[name] = value
    return out


def accuracy_counts(class_ids, cases, group):
    """(correct, total) for one batch: per sequence, per label (multilabel) or per real step."""
    targets = {k.split("/")[2]: v for k, v in cases.items() if k.startswith(group + "/target/")}
    if "label" in targets:
        return int(np.sum(class_ids == targets["label"])), class_ids.shape[0]
    if "labels" in targets:
        return int(np.sum(class_ids == targets["labels"].astype(np.int32))), class_ids.size
    if "tags" in targets:
        lengths = cases[group + "/in/lengths"]
        real = np.arange(class_ids.shape[1])[None, :] < lengths[:, None]
        return int(np.sum((class_ids == targets["tags"]) & real)), int(real.sum())
    return 0, 0


def batch1_latency_ms(session, inputs):
    """Median milliseconds of one run on the first sequence alone, cut to its length."""
    length = max(int(inputs["lengths"][0]), 1)
    one = {name: (value[:1] if name == "lengths" else value[:1, :length])
           for name, value in inputs.items()}
    for _ in range(3):
        run(session, one)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        run(session, one)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times)), length


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases")
    parser.add_argument("expected")
    parser.add_argument("model")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    cases, expected = load_npz(args.cases), load_npz(args.expected)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])

    report = {"ok": True, "max_diff": {}, "padding_max_diff": 0.0,
              "onnxruntime": ort.__version__}
    serving = groups(cases, "serving_default")
    for group in serving:
        inputs = inputs_of(cases, group)
        got = run(session, inputs)
        diffs = {}
        for name in OUTPUTS:
            want = expected[f"{group}/out/{name}"]
            if got[name].shape != want.shape:
                diffs[name] = f"shape {got[name].shape} != {want.shape}"
                report["ok"] = False
            elif name == "class_ids":
                diffs["class_id_mismatches"] = int(np.sum(got[name] != want))
            else:
                diffs[name] = float(np.max(np.abs(got[name].astype(np.float64) - want), initial=0.0))
                if not diffs[name] <= args.tolerance:
                    report["ok"] = False
        garbage = run(session, with_garbage(inputs))
        for name in ("logits", "probabilities"):
            moved = garbage[name][:, :got[name].shape[1]] if got[name].ndim == 3 else garbage[name]
            diff = float(np.max(np.abs(moved.astype(np.float64) - got[name]), initial=0.0))
            if not diff <= args.tolerance:  # NaN fails too
                report["ok"] = False
            report["padding_max_diff"] = max(report["padding_max_diff"],
                                             diff if diff == diff else float("inf"))
        values = next(v for k, v in inputs.items() if k != "lengths")
        report["max_diff"][group] = {"batch_and_time": list(values.shape[:2]), **diffs}

    correct = [0, 0]
    for group in groups(cases, "accuracy"):
        c, n = accuracy_counts(run(session, inputs_of(cases, group))["class_ids"], cases, group)
        correct[0] += c
        correct[1] += n
    if correct[1]:
        report["accuracy"] = correct[0] / correct[1]
        report["accuracy_examples"] = correct[1]
    if serving:
        latency, length = batch1_latency_ms(session, inputs_of(cases, serving[0]))
        report["latency_ms_batch1"] = latency
        report["latency_length"] = length
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    if report["tensorflow_imported"]:
        report["ok"] = False
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
