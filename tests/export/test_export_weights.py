"""weights.npz + weights.json are enough to run the model in NumPy."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # the shared exports (conftest.py)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_numpy_lstm_from_exported_weights_matches_serving(dense_export, dense_loaded):
    folder = dense_export.version_dir / "weights"
    manifest = json.loads((folder / "weights.json").read_text())
    w = dict(np.load(folder / "weights.npz"))
    assert manifest["cell"] == "lstm" and manifest["gates"] == ["i", "f", "c", "o"]
    assert manifest["forget_bias_in_bias"] and manifest["pooling"] == "last"
    (layer,) = manifest["layers"]
    assert layer["direction"] == "forward" and layer["input_size"] == 12
    p = layer["prefix"]
    assert w[f"{p}/i/kernel"].shape == (12, 32) and w[f"{p}/i/recurrent_kernel"].shape == (32, 32)

    batch = dense_export.batches[0]
    features, lengths = batch["features"].numpy(), batch["lengths"].numpy()
    x = (features - w["input/feature_mean"]) / w["input/feature_std"]
    h = np.zeros((len(lengths), 32))
    c = np.zeros_like(h)
    for t in range(features.shape[1]):
        g = {k: x[:, t] @ w[f"{p}/{k}/kernel"] + h @ w[f"{p}/{k}/recurrent_kernel"] + w[f"{p}/{k}/bias"]
             for k in manifest["gates"]}
        new_c = _sigmoid(g["f"]) * c + _sigmoid(g["i"]) * np.tanh(g["c"])
        new_h = _sigmoid(g["o"]) * np.tanh(new_c)
        real = (t < lengths)[:, None]
        c, h = np.where(real, new_c, c), np.where(real, new_h, h)
    logits = h @ w["head/kernel"] + w["head/bias"]
    served = dense_loaded.signatures["serving_default"](features=batch["features"], lengths=batch["lengths"])
    np.testing.assert_allclose(logits, served["logits"].numpy(), atol=1e-4)


def test_the_manifest_equation_of_the_ngram_bag_reproduces_it(token_export):
    folder = token_export.version_dir / "weights"
    manifest = json.loads((folder / "weights.json").read_text())
    arrays = np.load(folder / "weights.npz")
    table, gamma, beta = (arrays[f"ngram_bag/{name}"] for name in ("table", "gamma", "beta"))
    bag = manifest["ngram_bag"]
    assert (bag["orders"], bag["buckets"], bag["dim"]) == (2, 128, 4) and table.shape == (128, 4)
    batch = token_export.batches[0]
    ids, lengths = batch["token_ids"].numpy(), batch["lengths"].numpy()
    expected = []
    for sequence, length in zip(ids, lengths):
        rows = []
        for n in range(1, bag["orders"] + 1):
            for start in range(length - n + 1):
                h = 1
                for token in sequence[start:start + n]:
                    h = (h * bag["prime"] + int(token) + 1) % bag["buckets"]
                rows.append(table[h])
        mean = np.mean(rows, axis=0) if rows else np.zeros(bag["dim"])
        expected.append((mean - mean.mean()) / np.sqrt(mean.var() + bag["epsilon"]) * gamma + beta)
    got = token_export.model.ngram_bag(batch["token_ids"], batch["lengths"]).numpy()
    np.testing.assert_allclose(got, np.array(expected), atol=1e-5)
