"""ONNX: the graph built from the exported weights computes what the model computes, for every
cell, direction, pooling, branch and head it can express; garbage past a length never reaches
the outputs; the export verifies it in a process without TensorFlow and skips what ONNX cannot
express instead of failing."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import onnx_export
from export.onnx_graph import UnsupportedForOnnx, build_onnx
from export.weights import weight_arrays
from models.classifier import build_model
from models.config import ModelConfig

D, T = 3, 23
LENGTHS = np.array([T, 1, 7, 0, 15], np.int32)  # full, one step, partial, empty
BASE = dict(feature_dim=D, num_classes=4, conv_layers=0, conv_stride=1, random_features=0,
            ngram_orders=0, hidden_units=8, feature_mean=(0.1, 0.2, 0.3), feature_std=(1.0, 2.0, 0.5),
            prior_bias_init=False)
TOKENS = {k: v for k, v in BASE.items() if k not in ("feature_dim", "feature_mean", "feature_std")}
CASES = {
    "lstm forward last": dict(cell="lstm", bidirectional=False, pooling="last"),
    "lstm bidirectional attention": dict(cell="lstm", bidirectional=True, pooling="attention"),
    "lstm 2 layers bidirectional mean": dict(cell="lstm", num_layers=2, pooling="mean"),
    "gru forward max": dict(cell="gru", bidirectional=False, pooling="max"),
    "gru bidirectional last": dict(cell="gru", bidirectional=True, pooling="last"),
    "rnn bidirectional mean": dict(cell="rnn", pooling="mean"),
    "peephole lstm 2 layers bidirectional last": dict(cell="peephole_lstm", num_layers=2,
                                                      pooling="last"),
    "conv front end, branch": dict(conv_layers=2, conv_stride=4, conv_filters=6),
    "sequence norm": dict(sequence_norm="on"),
    "random features": dict(random_features=300, reference_length=20),
    "binary": dict(num_classes=2, head="binary"),
    "multilabel": dict(num_classes=3, head="multilabel", target_kind="labels"),
    "tagging": dict(head="tagging", target_kind="tags"),
}


def _inputs(config, rng):
    if config.uses_tokens:
        return "token_ids", rng.integers(1, config.vocab_size, size=(len(LENGTHS), T)).astype(np.int32)
    return "features", rng.normal(size=(len(LENGTHS), T, D)).astype(np.float32)


def _session(model):
    proto = build_onnx(*weight_arrays(model))
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(config):
    rng = np.random.default_rng(0)
    model = build_model(config)
    key, values = _inputs(config, rng)
    if config.uses_random_features:
        model.adapt([{key: values, "lengths": np.maximum(LENGTHS, 1)}])
    want = model({key: values, "lengths": LENGTHS}, training=False).numpy()
    session = _session(model)
    logits, probabilities, class_ids = session.run(None, {key: values, "lengths": LENGTHS})
    assert logits.shape == want.shape
    np.testing.assert_allclose(logits, want, atol=1e-5)
    assert np.all(np.isfinite(probabilities))
    # Garbage (NaN, out-of-range ids) past every length, and more padded steps, changes nothing.
    garbage = np.pad(values, [(0, 0), (0, 4)] + [(0, 0)] * (values.ndim - 2))
    past = np.arange(T + 4)[None, :] >= LENGTHS[:, None]
    garbage[past] = np.nan if values.dtype.kind == "f" else 10 ** 6
    moved = session.run(["logits"], {key: garbage, "lengths": LENGTHS})[0]
    np.testing.assert_allclose(moved[:, :T] if moved.ndim == 3 else moved, want, atol=1e-5)
    return model, class_ids


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_matches_the_model_and_ignores_padding(name):
    _check(ModelConfig(**{**BASE, **CASES[name]}))


def test_tokens_with_the_ngram_bag():
    _check(ModelConfig(input_kind="tokens", vocab_size=7, embedding_dim=5,
                       **{**TOKENS, "ngram_orders": 4, "ngram_buckets": 512, "ngram_dim": 6}))


def test_layer_norm_lstm_is_skipped_with_its_reason(tmp_path):
    model = build_model(ModelConfig(cell="layer_norm_lstm", **BASE))
    with pytest.raises(UnsupportedForOnnx, match="layer_norm_lstm"):
        build_onnx(*weight_arrays(model))
    spec = type("Spec", (), {"is_tokens": False, "feature_dim": D, "labels": list("abcd")})()
    written = onnx_export.write_onnx(*weight_arrays(model), spec, str(tmp_path))
    assert "layer_norm_lstm" in written["onnx_skipped"] and not (tmp_path / "onnx").exists()


@pytest.mark.slow  # the shared exports
def test_exports_are_verified_in_a_process_without_tensorflow(dense_export, token_export):
    for export, extra in ((dense_export, []), (token_export, ["vocab.txt", "TOKENIZATION.md"])):
        result = export.result
        assert result["onnx_verified"] is True, result
        assert result["onnx_max_diff"] <= 1e-4 and result["onnx_padding_max_diff"] <= 1e-4, result
        assert result["onnx_bytes"] > 0 and result["onnx_latency_ms_batch1"] > 0, result
        assert result["tflite_latency_ms_batch1"] > 0, result
        # The same float model on the same held-out examples as TFLite: at most one flip.
        assert result["onnx_accuracy_examples"] == result["tflite_accuracy_examples"] > 0
        assert abs(result["onnx_accuracy"] - result["tflite_accuracy_float"]) <= (
            1.0 / result["onnx_accuracy_examples"] + 1e-9)
        folder = export.version_dir / "onnx"
        for name in ["model.onnx", "labels.txt"] + extra:
            assert (folder / name).exists(), name
        model = onnx.load(str(folder / "model.onnx"))
        assert [i.name for i in model.graph.input] == [export.model.input_key, "lengths"]
        assert [o.name for o in model.graph.output] == ["logits", "probabilities", "class_ids"]
        # ONNX's own length-aware recurrence, not an unrolled loop.
        assert {"GRU" if export.model.model_config.cell == "gru" else "LSTM"} <= {
            node.op_type for node in model.graph.node}
        assert not {"Loop", "Scan"} & {node.op_type for node in model.graph.node}


@pytest.mark.slow  # the shared exports
def test_the_onnx_accuracy_equals_the_tflite_accuracy(dense_export):
    # Two runtimes, same model, same held-out batches: the same decisions.
    result = dense_export.result
    assert result["onnx_accuracy"] == pytest.approx(result["tflite_accuracy_float"], abs=1e-9)


@pytest.mark.slow  # the shared exports
def test_the_verifier_fails_a_model_that_differs(dense_export, tmp_path):
    model = build_model(dense_export.model.model_config)
    model.set_weights(dense_export.model.get_weights())
    arrays, manifest = weight_arrays(model)
    arrays = dict(arrays, **{"head/bias": arrays["head/bias"] + 0.01})
    path = tmp_path / "shifted.onnx"
    path.write_bytes(build_onnx(arrays, manifest).SerializeToString())
    # The cases and the SavedModel's outputs the export checked against: rebuilt here.
    batch = {k: v.numpy() for k, v in dense_export.batches[0].items()}
    served = dense_export.model({"features": batch["features"], "lengths": batch["lengths"]})
    logits = served.numpy()
    cases = {"serving_default/in/features": batch["features"], "serving_default/in/lengths": batch["lengths"]}
    expected = {"serving_default/out/logits": logits,
                "serving_default/out/probabilities": np.exp(logits) / np.exp(logits).sum(-1, keepdims=True),
                "serving_default/out/class_ids": logits.argmax(-1).astype(np.int32)}
    np.savez(tmp_path / "cases.npz", **cases)
    np.savez(tmp_path / "expected.npz", **expected)
    good = onnx_export.verify_onnx(str(tmp_path / "cases.npz"), str(tmp_path / "expected.npz"),
                                   str(dense_export.version_dir / "onnx" / "model.onnx"))
    assert good["ok"] and good["tensorflow_imported"] is False
    with pytest.raises(RuntimeError, match="failed verification"):
        onnx_export.verify_onnx(str(tmp_path / "cases.npz"), str(tmp_path / "expected.npz"), str(path))
