"""Loads an exported SavedModel in a clean process and checks it before it is published.

Run as a script, never imported by the trainer:

    python verify_standalone.py SAVED_MODEL_DIR CASES.npz [--tolerance 1e-5] [--outputs OUT.npz]

It imports only TensorFlow, NumPy and the TF Serving protos (`tensorflow_serving.apis`, to read
the warmup file the way TF Serving does), never this package: what it can load, a server can.

Checks, each one fails the export:
1. core ops: every op in the graph and in every function of its library is registered by
   stock TensorFlow in this process (which imported nothing else that registers ops) and can
   run without Python (no PyFunc); a tensorflow-text or custom op is reported by name.
2. cases: `CASES.npz` holds, per case group G ("serving_default", "serving_default:small",
   "text", ...; the signature is the part before ":"), inputs `G/in/<name>` and expected
   outputs `G/out/<name>`; every output must match within the tolerance (strings exactly).
3. session load: the same cases run once more through the TF1 session loader, which restores
   variables the way TF Serving's C++ loader and `saved_model_cli run` do (through the saver,
   not the object graph `tf.saved_model.load` uses: a variable only the latter finds would
   pass check 2 and fail in the server).
4. warmup: every `PredictionLog` in `assets.extra/tf_serving_warmup_requests` is replayed on
   its named signature and must give finite outputs with the request's batch size.
Prints one JSON line: the checks and the largest differences. Exit status 1 on failure.
With `--outputs`, the loaded model's outputs are saved (`G/out/<name>`) for the TFLite check.
"""

import argparse
import io
import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# Registered in core TF but need a Python interpreter next to the graph: not servable.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def graph_ops(saved_model_dir: str):
    """({op name: count} over the graph and all library functions, {function names})."""
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(tf.io.gfile.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops, functions = {}, set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        functions.update(f.signature.name for f in graph.library.function)
        nodes = list(graph.node)
        for function in graph.library.function:
            nodes.extend(function.node_def)
        for node in nodes:
            ops[node.op] = ops.get(node.op, 0) + 1
    return ops, functions


def non_core_ops(saved_model_dir: str):
    """Sorted op names that stock TensorFlow does not register (or that need Python)."""
    ops, functions = graph_ops(saved_model_dir)
    return sorted(op for op in ops if op not in functions and
                  (op in PYTHON_OPS or op_def_registry.get(op) is None))


def check_cases(loaded, cases, tolerance):
    report, ok, outputs_seen = {}, True, {}
    for group in sorted({key.split("/")[0] for key in cases}):
        name = group.split(":")[0]
        if name not in loaded.signatures:
            report[group], ok = "missing", False
            continue
        inputs = {key.split("/")[2]: tf.constant(value) for key, value in cases.items()
                  if key.startswith(group + "/in/")}
        outputs = loaded.signatures[name](**inputs)
        diffs = {}
        for key, expected in cases.items():
            if not key.startswith(group + "/out/"):
                continue
            output = key.split("/")[2]
            if output not in outputs:
                diffs[output], ok = "missing", False
                continue
            got = outputs[output].numpy()
            outputs_seen[key] = got.astype(bytes) if got.dtype == object else got
            if got.shape != expected.shape:
                diffs[output], ok = f"shape {got.shape} != {expected.shape}", False
            elif expected.dtype.kind in "SUO":
                diffs[output] = 0.0 if np.array_equal(got.astype(expected.dtype), expected) else float("inf")
            else:
                diffs[output] = (float(np.max(np.abs(got.astype(np.float64) - expected)))
                                 if expected.size else 0.0)
            if not (isinstance(diffs[output], float) and diffs[output] <= tolerance):
                ok = False
        report[group] = diffs
    return ok, report, outputs_seen


def check_session_load(saved_model_dir, cases, tolerance):
    """Check 3: (ok, {group: max difference or error}) through `tf.compat.v1` sessions."""
    v1 = tf.compat.v1
    report, ok = {}, True
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        meta_graph = v1.saved_model.loader.load(session, ["serve"], saved_model_dir)
        for group in sorted({key.split("/")[0] for key in cases}):
            signature = meta_graph.signature_def.get(group.split(":")[0])
            if signature is None:
                report[group], ok = "missing", False
                continue
            feed = {signature.inputs[key.split("/")[2]].name: value for key, value in cases.items()
                    if key.startswith(group + "/in/")}
            wanted = {key.split("/")[2]: value for key, value in cases.items()
                      if key.startswith(group + "/out/")}
            try:
                got = session.run({name: signature.outputs[name].name for name in wanted}, feed)
            except tf.errors.OpError as error:
                report[group], ok = f"{type(error).__name__}: {error.message[:300]}", False
                continue
            diff = 0.0
            for name, expected in wanted.items():
                if expected.dtype.kind in "SUO":
                    same = np.array_equal(np.asarray(got[name]).astype(expected.dtype), expected)
                    diff = max(diff, 0.0 if same else float("inf"))
                elif expected.size:
                    diff = max(diff, float(np.max(np.abs(got[name].astype(np.float64) - expected))))
            report[group] = diff
            ok &= diff <= tolerance
    return ok, report


def replay_warmup(loaded, saved_model_dir):
    """Runs every warmup request; returns (ok, {signature: requests replayed}, errors)."""
    from tensorflow_serving.apis import prediction_log_pb2  # the TF Serving wire format

    path = tf.io.gfile.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return False, {}, [f"no warmup file at {path}"]
    counts, errors = {}, []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        request = log.predict_log.request
        name = request.model_spec.signature_name or "serving_default"
        if name not in loaded.signatures:
            errors.append(f"warmup request for missing signature {name!r}")
            continue
        inputs = {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()}
        batch = int(next(iter(inputs.values())).shape[0])
        for key, value in loaded.signatures[name](**inputs).items():
            value = value.numpy()
            if value.shape[:1] != (batch,):
                errors.append(f"{name}/{key}: batch {value.shape[:1]} for a request of {batch}")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                errors.append(f"{name}/{key}: non-finite output on a warmup request")
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        errors.append("the warmup file holds no requests")
    return not errors, counts, errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("saved_model_dir")
    parser.add_argument("cases")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--outputs", default="")
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args(argv)

    report = {"ok": True}
    bad_ops = non_core_ops(args.saved_model_dir)
    report["non_core_ops"] = bad_ops
    if bad_ops:
        report["ok"] = False
        print(json.dumps(report))
        return 1
    loaded = tf.saved_model.load(args.saved_model_dir)
    with tf.io.gfile.GFile(args.cases, "rb") as f:
        cases = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
    ok, report["signatures"], outputs = check_cases(loaded, cases, args.tolerance)
    report["ok"] &= ok
    ok, report["session_load"] = check_session_load(args.saved_model_dir, cases, args.tolerance)
    report["ok"] &= ok
    if not args.no_warmup:
        ok, report["warmup"], errors = replay_warmup(loaded, args.saved_model_dir)
        report["ok"] &= ok
        if errors:
            report["warmup_errors"] = errors[:10]
    if args.outputs:
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)
        with tf.io.gfile.GFile(args.outputs, "wb") as f:
            f.write(buffer.getvalue())
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
