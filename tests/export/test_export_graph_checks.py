"""Core-op walk, warmup records and the publish-only-when-verified rule."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

import export.saved_model as saved_model_lib
from export import verify_standalone
from export.warmup import write_warmup
from export_testlib import dense_spec, make_batches, model_config, run_config
from export import export_model
from models import build_model

pytestmark = pytest.mark.slow  # the shared exports, and two whole exports of its own


@pytest.mark.parametrize("which", ["dense_export", "token_export"])
def test_graph_holds_only_core_ops(which, request):
    version = str(request.getfixturevalue(which).version_dir)
    ops, functions = verify_standalone.graph_ops(version)
    # The walk reaches into the function library, where the signatures and loops live.
    assert functions and {"While", "StatelessWhile"} & set(ops), sorted(ops)
    if which == "token_export":
        assert {"StringSplitV2", "LookupTableFindV2"} <= set(ops)
    assert verify_standalone.non_core_ops(version) == []


def test_core_op_walk_catches_foreign_and_python_ops(dense_export, tmp_path):
    copy = tmp_path / "doctored"
    shutil.copytree(dense_export.version_dir, copy)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((copy / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    # A tensorflow-text op deep inside a library function, a custom op and a PyFunc.
    graph.library.function[0].node_def.add(name="fold", op="CaseFoldUTF8")
    graph.library.function[-1].node_def.add(name="mine", op="MyCompanyFancyLstm")
    graph.node.add(name="py", op="EagerPyFunc")
    (copy / "saved_model.pb").write_bytes(proto.SerializeToString())
    assert verify_standalone.non_core_ops(str(copy)) == ["CaseFoldUTF8", "EagerPyFunc",
                                                          "MyCompanyFancyLstm"]
    cases = tmp_path / "cases.npz"
    np.savez(cases)  # no signature cases: only the op walk and the warmup replay run
    assert verify_standalone.main([str(copy), str(cases)]) == 1


def test_warmup_records_are_prediction_logs_from_the_sample(dense_export):
    path = dense_export.version_dir / "assets.extra" / "tf_serving_warmup_requests"
    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log.predict_log.request)
    assert sorted({r.model_spec.signature_name for r in logs}) == ["embed", "serving_default", "uncertainty"]
    sample = dense_export.batches[0]
    for request in logs:
        features = tf.make_ndarray(request.inputs["features"])
        lengths = tf.make_ndarray(request.inputs["lengths"])
        n = len(lengths)
        assert n in (1, 4) and features.shape == (n, lengths.max(), 12)
        np.testing.assert_array_equal(lengths, sample["lengths"].numpy()[:n])
        np.testing.assert_array_equal(features, sample["features"].numpy()[:n, : lengths.max()])


def test_warmup_replay_fails_on_a_bad_request(dense_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dense_export.version_dir, copy)
    cases = tmp_path / "cases.npz"
    np.savez(cases)  # no signature cases: only the op walk and the warmup replay run
    good = {"features": np.zeros([1, 2, 12], np.float32), "lengths": np.array([2], np.int32)}
    write_warmup(str(copy), [("serving_default", good)])
    assert verify_standalone.main([str(copy), str(cases)]) == 0
    write_warmup(str(copy), [("serving_default", good), ("no_such_signature", good)])
    assert verify_standalone.main([str(copy), str(cases)]) == 1


def test_broken_export_is_never_published(tmp_path, monkeypatch):
    spec = dense_spec()
    model = build_model(model_config(spec, hidden_units=4))
    spec.save(str(tmp_path / "model"))
    original = saved_model_lib.expected_cases

    def wrong_expectations(*args, **kwargs):  # as if the exported graph computed other logits
        cases = original(*args, **kwargs)
        cases["serving_default/out/logits"] = cases["serving_default/out/logits"] + 1e-3
        return cases

    monkeypatch.setattr(saved_model_lib, "expected_cases", wrong_expectations)
    config = run_config(model, tmp_path / "model", tmp_path / "export", formats="saved_model")
    with pytest.raises(RuntimeError, match="failed verification"):
        export_model(model, spec, config, make_batches(spec, count=1))
    names = [p.name for p in (tmp_path / "export").iterdir()]
    assert not [n for n in names if n.isdigit()], names
    assert len(names) == 1 and names[0].startswith("tmp-")  # kept for inspection


def test_export_only_the_object_graph_can_load_is_never_published(tmp_path, monkeypatch):
    """Without the raw tf.Variables tracked, tf.saved_model.load still works but TF Serving's
    session loader finds no variables: the session-load check must stop it."""

    class UntrackedRawVariables(saved_model_lib.ServingModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self.raw_variables

    spec = dense_spec()
    model = build_model(model_config(spec, hidden_units=4))
    spec.save(str(tmp_path / "model"))
    monkeypatch.setattr(saved_model_lib, "ServingModule", UntrackedRawVariables)
    config = run_config(model, tmp_path / "model", tmp_path / "export", formats="saved_model")
    with pytest.raises(RuntimeError, match="session_load"):
        export_model(model, spec, config, make_batches(spec, count=1))
    assert not [p for p in (tmp_path / "export").iterdir() if p.name.isdigit()]
