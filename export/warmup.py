"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests` in a SavedModel version.

TF Serving replays these `PredictionLog`s (each a `PredictRequest` naming its signature) while
it loads a version, so the first real request does not pay for graph initialisation. The
requests are cut from held-out examples; `verify_standalone.py` replays them too.
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def prediction_log(signature: str, inputs: Dict[str, np.ndarray]) -> prediction_log_pb2.PredictionLog:
    """One `PredictionLog` whose `PredictRequest` runs `signature` on `inputs`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup(saved_model_dir: str, requests: Iterable[Tuple[str, Dict[str, np.ndarray]]]) -> str:
    """Writes (signature, inputs) pairs as a TFRecord of PredictionLogs; returns the path."""
    folder = tf.io.gfile.join(saved_model_dir, WARMUP_DIR)
    tf.io.gfile.makedirs(folder)
    path = tf.io.gfile.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            writer.write(prediction_log(signature, inputs).SerializeToString())
    return path


def warmup_requests(signatures, sample: Dict[str, np.ndarray], texts=None, sizes=(1, 4)):
    """(signature, inputs) pairs: for each signature, the first `size` sample rows, trimmed to
    their longest length (so warmup also sees short batches)."""
    requests = []
    for size in sizes:
        rows = {key: value[:size] for key, value in sample.items()}
        longest = int(rows["lengths"].max(initial=1))
        for name, function in sorted(signatures.items()):
            names = [spec.name for spec in function.structured_input_signature[0]]
            if name == "text":
                if texts is not None:
                    requests.append((name, {"text": np.asarray(list(texts)[:size], dtype=object)}))
                continue
            requests.append((name, {key: rows[key][:, :longest] if key != "lengths" else rows[key]
                                    for key in names}))
    return requests
