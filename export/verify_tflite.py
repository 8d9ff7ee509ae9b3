"""Checks exported TFLite models in a clean process that never imports TensorFlow.

    python verify_tflite.py CASES.npz EXPECTED.npz MODEL.tflite [QUANTIZED.tflite] [--tolerance 1e-4]

Only NumPy and `ai_edge_litert` (the standalone TFLite runtime an app would ship) are imported;
the script fails if TensorFlow got imported anyway. For every case group G in `CASES.npz`
whose signature is `serving_default` (G/in/<name>: the inputs, each group its own batch size
and length), the float model runs through the `serving_default` signature runner, resized to
that batch, and its `logits`, `probabilities` and `class_ids` must match `EXPECTED.npz`
(G/out/<name>, the SavedModel's outputs) within the tolerance. Groups named `accuracy:<k>`
also carry `G/target/<label|labels|tags>`; both models' accuracy on them is reported, and the
quantized model's largest probability difference from the float one. Latency: the first
sequence of the first group alone (batch 1, its own length), median of repeated runs in ms.
Prints one JSON line; exit status 1 on failure.
"""

import argparse
import io
import json
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

OUTPUTS = ("logits", "probabilities", "class_ids")
LATENCY_RUNS = 50


def load_npz(path):
    with open(path, "rb") as f:
        return dict(np.load(io.BytesIO(f.read()), allow_pickle=False))


def groups(cases, prefix):
    return sorted({k.split("/")[0] for k in cases if k.split("/")[0].split(":")[0] == prefix})


def run(runner, cases, group):
    """Runs the signature runner on one case group; the runner resizes to the input shapes."""
    inputs = {k.split("/")[2]: v for k, v in cases.items() if k.startswith(group + "/in/")}
    return runner(**inputs)


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


def batch1_latency_ms(runner, inputs):
    """Median milliseconds of one run on the first sequence alone, cut to its length."""
    length = max(int(inputs["lengths"][0]), 1)
    one = {name: (value[:1] if name == "lengths" else value[:1, :length])
           for name, value in inputs.items()}
    for _ in range(3):
        runner(**one)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        runner(**one)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times)), length


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases")
    parser.add_argument("expected")
    parser.add_argument("model")
    parser.add_argument("quantized", nargs="?", default="")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    cases, expected = load_npz(args.cases), load_npz(args.expected)

    report = {"ok": True, "max_diff": {}}
    float_runner = Interpreter(model_path=args.model).get_signature_runner("serving_default")
    quant_runner = (Interpreter(model_path=args.quantized).get_signature_runner("serving_default")
                    if args.quantized else None)
    for group in groups(cases, "serving_default"):
        got = run(float_runner, cases, group)
        diffs = {}
        for name in OUTPUTS:
            want = expected[f"{group}/out/{name}"]
            if got[name].shape != want.shape:
                diffs[name] = f"shape {got[name].shape} != {want.shape}"
                report["ok"] = False
            elif name == "class_ids":
                # Reported, not failed on: a decision may flip where probabilities tie within
                # the tolerance; the probabilities themselves are what must agree.
                diffs["class_id_mismatches"] = int(np.sum(got[name] != want))
            else:
                diffs[name] = float(np.max(np.abs(got[name].astype(np.float64) - want), initial=0.0))
                if not diffs[name] <= args.tolerance:
                    report["ok"] = False
        values = next(v for k, v in cases.items()
                      if k.startswith(group + "/in/") and not k.endswith("/lengths"))
        report["max_diff"][group] = {"batch_and_time": list(values.shape[:2]), **diffs}

    correct = {"float": [0, 0], "quantized": [0, 0]}
    quant_diff = 0.0
    for group in groups(cases, "accuracy"):
        got = run(float_runner, cases, group)
        c, n = accuracy_counts(got["class_ids"], cases, group)
        correct["float"][0] += c
        correct["float"][1] += n
        if quant_runner is not None:
            q = run(quant_runner, cases, group)
            c, n = accuracy_counts(q["class_ids"], cases, group)
            correct["quantized"][0] += c
            correct["quantized"][1] += n
            quant_diff = max(quant_diff, float(np.max(np.abs(q["probabilities"] - got["probabilities"]),
                                                      initial=0.0)))
    for kind, (c, n) in correct.items():
        if n:
            report[f"accuracy_{kind}"] = c / n
            report["accuracy_examples"] = n
    if quant_runner is not None:
        report["quantized_max_probability_diff"] = quant_diff
    serving = groups(cases, "serving_default")
    if serving:
        # Its own interpreter: the runner above has buffers sized for the last case.
        latency_runner = Interpreter(model_path=args.model).get_signature_runner("serving_default")
        inputs = {k.split("/")[2]: v for k, v in cases.items() if k.startswith(serving[0] + "/in/")}
        report["latency_ms_batch1"], report["latency_length"] = batch1_latency_ms(latency_runner, inputs)
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    if report["tensorflow_imported"]:
        report["ok"] = False
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
