"""The published version: layout, signatures and shapes, the text path, the returned report."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from export_testlib import DENSE_LABELS, MC_SAMPLES, VOCAB
from data.spec import DataSpec

pytestmark = pytest.mark.slow  # the shared exports (conftest.py)

PREDICT = "tensorflow/serving/predict"


def _signature_defs(version_dir):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(version_dir) / "saved_model.pb").read_bytes())
    return {name: sig for name, sig in proto.meta_graphs[0].signature_def.items()
            if not name.startswith("__")}  # __saved_model_init_op initialises tables


def _shape(tensor_info):
    return [d.size for d in tensor_info.tensor_shape.dim]


def test_version_layout_and_report(dense_export):
    result, root = dense_export.result, dense_export.export_dir
    assert [p.name for p in root.iterdir()] == [str(result["version"])]  # no tmp-* left over
    version = dense_export.version_dir
    for path in ("saved_model.pb", "variables/variables.index", "assets/labels.txt",
                 "assets/data_spec.json", "assets.extra/tf_serving_warmup_requests",
                 "tflite/model.tflite", "tflite/model_quantized.tflite", "tflite/labels.txt",
                 "weights/weights.npz", "weights/weights.json"):
        assert (version / path).is_file(), path
    assert DataSpec.load(str(version)) == dense_export.spec
    assert result["verified"] and result["tflite_verified"]
    assert result["saved_model_max_diff"] <= 1e-5
    assert result["tflite_max_diff"] <= 1e-4
    assert result["warmup_replayed"] == result["warmup_requests"] >= 6
    assert result["mc_samples"] == MC_SAMPLES
    json.dumps(result)  # the trainer writes it into metrics.json


def test_dense_signatures_and_shapes(dense_export, dense_loaded):
    defs = _signature_defs(dense_export.version_dir)
    assert set(defs) == {"serving_default", "embed", "uncertainty"}
    for name, sig in defs.items():
        assert sig.method_name == PREDICT, name
        assert set(sig.inputs) == {"features", "lengths"}
        assert _shape(sig.inputs["features"]) == [-1, -1, 12]
        assert _shape(sig.inputs["lengths"]) == [-1]
        assert sig.inputs["features"].dtype == tf.float32.as_datatype_enum
        assert sig.inputs["lengths"].dtype == tf.int32.as_datatype_enum
    batch = dense_export.batches[1]
    b = int(batch["lengths"].shape[0])
    out = dense_loaded.signatures["serving_default"](features=batch["features"], lengths=batch["lengths"])
    assert out["logits"].shape == (b, 9) and out["probabilities"].shape == (b, 9)
    assert out["class_ids"].dtype == tf.int32 and out["class_ids"].shape == (b,)
    want = np.array(DENSE_LABELS)[out["class_ids"].numpy()]
    np.testing.assert_array_equal(out["classes"].numpy().astype(str), want)
    np.testing.assert_allclose(out["logits"], dense_export.model(batch, training=False), atol=1e-5)
    emb = dense_loaded.signatures["embed"](features=batch["features"], lengths=batch["lengths"])
    assert emb["embedding"].shape == (b, 32)
    np.testing.assert_allclose(emb["embedding"], dense_export.model.embed(batch), atol=1e-5)
    unc = dense_loaded.signatures["uncertainty"](features=batch["features"], lengths=batch["lengths"])
    assert {k: tuple(v.shape) for k, v in unc.items()} == {
        "probabilities": (b, 9), "class_ids": (b,), "classes": (b,), "predictive_entropy": (b,),
        "expected_entropy": (b,), "mutual_information": (b,)}


def test_token_signatures_and_text_path(token_export, token_loaded):
    defs = _signature_defs(token_export.version_dir)
    assert set(defs) == {"serving_default", "embed", "uncertainty", "text"}
    assert set(defs["serving_default"].inputs) == {"token_ids", "lengths"}
    assert set(defs["text"].inputs) == {"text"} and defs["text"].method_name == PREDICT
    assert (token_export.version_dir / "assets" / "vocab.txt").read_text().split("\n")[:-1] == list(VOCAB)

    texts = ["The movie was GOOD, not bad!", "plot", "great great zebra"]
    oov = int(tf.strings.to_hash_bucket_fast("zebra", 2)) + len(VOCAB) + 1
    ids = [[1, 2, 5, 3, 6, 8, 4, 7], [9, 0, 0, 0, 0, 0, 0, 0], [10, 10, oov, 0, 0, 0, 0, 0]]
    lengths = [8, 1, 3]
    by_text = token_loaded.signatures["text"](text=tf.constant(texts))
    by_ids = token_loaded.signatures["serving_default"](
        token_ids=tf.constant(ids, tf.int32), lengths=tf.constant(lengths, tf.int32))
    assert set(by_text) == set(by_ids) == {"logits", "probabilities", "class_ids", "classes"}
    assert by_ids["logits"].shape == (3, 1)  # binary head: one logit
    for key in by_ids:
        np.testing.assert_array_equal(by_text[key].numpy(), by_ids[key].numpy())
    assert set(by_ids["classes"].numpy().astype(str)) <= {"neg", "pos"}


def test_token_export_verified_the_text_signature(token_export):
    # The trainer passes no texts: they are rebuilt from the sample's token ids and checked.
    assert "text" in token_export.result["checked"]
    assert token_export.result["verified"]
    assert token_export.result["warmup_replayed"] == token_export.result["warmup_requests"] == 8
