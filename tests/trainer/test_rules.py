"""Defaults decided from the data (trainer/rules.py, the step and hold-out rules): unit rules,
and one CLI run on long univariate series, where they switch on the front end, train on every
record, and the export is verified with them."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from data.spec import DataSpec
from trainer import rules
from trainer.config import Config
from models.config import ModelConfig


def _spec(median, feature_dim=1, kind="features"):
    quantiles = tuple([max(1, median // 2)] * 5 + [median] + [median * 2] * 5)
    return DataSpec(input_kind=kind, target_kind="label", labels=("a", "b"),
                    feature_dim=feature_dim if kind == "features" else 0,
                    vocab=("x",) if kind != "features" else (), length_quantiles=quantiles)


@pytest.mark.parametrize("median,layers,stride", [
    (15, 0, 1), (128, 0, 1), (129, 2, 2), (286, 2, 2), (865, 2, 8), (1460, 2, 16), (2000, 2, 16),
    (20000, 4, 256)])
def test_front_end_reads_about_150_steps_at_the_median(median, layers, stride):
    assert rules.frontend_for(median) == (layers, stride)
    if layers:
        assert median / stride <= rules.RECURRENCE_TARGET_STEPS
        assert median / stride > rules.RECURRENCE_TARGET_STEPS / 2 or stride == 2
        assert ModelConfig(conv_layers=layers, conv_stride=stride).conv_strides  # buildable


def test_resolve_fills_every_auto_field_and_says_why():
    config, notes = rules.resolve(Config(), _spec(1460))
    model = config.model
    assert (model.conv_layers, model.conv_stride, model.sequence_norm) == (2, 16, "off")
    assert model.conv_strides == (4, 4)
    assert (model.random_features, model.reference_length) == (4000, 0)  # the spec fills the latter
    assert len(notes) == 5 and all("median training length 1460" in note for note in notes[:2])
    assert model.pooling == "mean" and notes[2].startswith("pooling: mean")
    assert model.label_smoothing == 0.0 and notes[3].startswith("label smoothing: 0.0")
    assert model.ngram_orders == 0 and notes[4].startswith("n-gram bag: none")
    tokens = rules.resolve(Config(), _spec(865, kind="tokens"))[0].model
    assert (tokens.conv_layers, tokens.conv_stride) == (2, 8)
    short = rules.resolve(Config(), _spec(15, feature_dim=12))[0].model
    assert short.conv_layers == 0 and short.conv_strides == ()


def test_a_value_the_user_gives_wins_over_the_rule():
    user = Config(model=ModelConfig(conv_layers=0, sequence_norm="on"))
    model = rules.resolve(user, _spec(2000))[0].model
    assert (model.conv_layers, model.sequence_norm) == (0, "on")
    model = rules.resolve(Config(model=ModelConfig(conv_stride=4)), _spec(2000))[0].model
    assert (model.conv_layers, model.conv_stride) == (2, 4)
    # A front end asked for on short sequences keeps every step.
    model = rules.resolve(Config(model=ModelConfig(conv_layers=1)), _spec(20))[0].model
    assert (model.conv_layers, model.conv_stride) == (1, 1)
    tagging = Config(model=ModelConfig(target_kind="tags"))
    assert rules.resolve(tagging, _spec(2000))[0].model.conv_layers == 0


@pytest.mark.parametrize("median,kind,head,expected", [
    (300, "features", "auto", 4000), (129, "features", "auto", 4000),
    (128, "features", "auto", 0), (15, "features", "auto", 0),
    (2000, "tokens", "auto", 0), (2000, "features", "tagging", 0)])
def test_random_features_for_long_dense_series_only(median, kind, head, expected):
    spec = _spec(median, kind=kind)
    model = ModelConfig(head=head, target_kind="tags" if head == "tagging" else "label",
                        input_kind="tokens" if kind == "tokens" else "features")
    resolved, notes = rules.resolve(Config(model=model), spec)
    assert resolved.model.random_features == expected
    assert any(note.startswith("random-convolution features") for note in notes)
    user = Config(model=dataclasses.replace(model, random_features=100))
    assert rules.resolve(user, spec)[0].model.random_features == 100  # a user's value stands


@pytest.mark.parametrize("vocab,median,head,expected,buckets", [
    (("A", "C", "G", "T", "N"), 865, "auto", 8, 2 ** 16),  # 5 ** 7 < 86,500 <= 5 ** 8
    (("A", "C", "G", "T"), 50, "auto", 7, 2 ** 15),  # 4 ** 6 < 5,000 <= 4 ** 7; 21,844 n-grams
    (tuple("ACDEFGHIKLMNPQRSTVWY"), 400, "auto", 4, 2 ** 16),  # amino acids
    (("a", "b"), 10 ** 6, "auto", 10, 2 ** 11),  # the longest order allowed
    (tuple(f"w{i}" for i in range(20000)), 50, "auto", 0, -1),  # words: no bag
    (("a", "b"), 50, "tagging", 0, -1)])
def test_ngram_orders_from_the_alphabet_and_the_median_length(vocab, median, head, expected, buckets):
    spec = dataclasses.replace(_spec(median, kind="tokens"), vocab=vocab)
    model = ModelConfig(head=head, target_kind="tags" if head == "tagging" else "label", input_kind="tokens")
    resolved, notes = rules.resolve(Config(model=model), spec)
    assert (resolved.model.ngram_orders, resolved.model.ngram_buckets) == (expected, buckets)
    said = [note for note in notes if note.startswith("n-gram bag: ")]
    assert said and said[0].startswith("n-gram bag: " + (f"orders 1..{expected}" if expected else "none"))
    if expected:
        assert len(vocab) ** expected >= rules.NGRAM_SPECIFICITY * median or expected == rules.MAX_NGRAM_ORDER
        assert expected == rules.MIN_NGRAM_ORDER or len(vocab) ** (expected - 1) < rules.NGRAM_SPECIFICITY * median
    user = Config(model=dataclasses.replace(model, ngram_orders=1, ngram_buckets=64))
    assert (rules.resolve(user, spec)[0].model.ngram_orders,
            rules.resolve(user, spec)[0].model.ngram_buckets) == (1, 64)  # a user's values stand
    dense = rules.resolve(Config(), _spec(50))[0].model
    assert dense.ngram_orders == 0


@pytest.mark.parametrize("kind,alphabet,head,expected", [
    ("tokens", 20000, "auto", "max"),  # words: one word can carry the class
    ("tokens", 33, "auto", "max"),
    ("tokens", 32, "auto", "mean"),  # characters, amino acids, nucleotides
    ("tokens", 20000, "tagging", "mean"),
    ("features", 0, "auto", "mean")])
def test_pooling_is_max_for_word_vocabularies_only(kind, alphabet, head, expected):
    spec = dataclasses.replace(_spec(12, kind=kind), vocab=tuple(f"w{i}" for i in range(alphabet)))
    model = ModelConfig(head=head, target_kind="tags" if head == "tagging" else "label",
                        input_kind=kind)
    resolved, notes = rules.resolve(Config(model=model), spec)
    assert resolved.model.pooling == expected
    assert any(note.startswith(f"pooling: {expected}") for note in notes)
    user = Config(model=dataclasses.replace(model, pooling="last"))
    assert rules.resolve(user, spec)[0].model.pooling == "last"  # a user's value stands
    assert ModelConfig().resolved_pooling == "mean"  # built unresolved: the mean


@pytest.mark.parametrize("kind,alphabet,head,width,smoothing", [
    ("tokens", 20000, "auto", 128, 0.1),  # words
    ("tokens", 33, "auto", 128, 0.1),
    ("tokens", 5, "auto", 64, 0.0),  # nucleotides
    ("tokens", 20000, "tagging", 64, 0.0),
    ("features", 0, "auto", 64, 0.0)])
def test_word_vocabularies_get_a_wider_embedding_and_smoothed_labels(kind, alphabet, head, width,
                                                                     smoothing):
    spec = dataclasses.replace(_spec(12, kind=kind), vocab=tuple(f"w{i}" for i in range(alphabet)))
    model = ModelConfig(head=head, target_kind="tags" if head == "tagging" else "label",
                        input_kind=kind)
    resolved, notes = rules.resolve(Config(model=model), spec)
    assert (resolved.model.embedding_dim, resolved.model.label_smoothing) == (width, smoothing)
    assert any(note.startswith(f"label smoothing: {smoothing}") for note in notes)
    assert any(note.startswith(f"embedding: {width} wide") for note in notes) == (kind == "tokens")
    user = Config(model=dataclasses.replace(model, embedding_dim=32, label_smoothing=0.0))
    assert (rules.resolve(user, spec)[0].model.embedding_dim,
            rules.resolve(user, spec)[0].model.label_smoothing) == (32, 0.0)  # a user's values stand
    unresolved = ModelConfig()
    assert (unresolved.resolved_embedding_dim, unresolved.resolved_label_smoothing) == (64, 0.0)


def test_a_bag_without_its_table_size_is_not_buildable():
    with pytest.raises(ValueError, match="ngram_buckets"):
        ModelConfig(input_kind="tokens", vocab_size=7, num_classes=2, ngram_orders=3).check_buildable()


def _series(path, n, length, seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    with open(path, "w") as f:
        for i in range(n):
            label = i % 2
            wave = np.sin(2 * np.pi * (3 + 4 * label) * t) * rng.uniform(1, 5) + rng.uniform(-9, 9)
            f.write(json.dumps({"id": i, "label": f"c{label}",
                                "features": [[round(float(v), 4)] for v in wave]}) + "\n")
    return str(path)


@pytest.mark.slow  # a whole run and its export
def test_long_series_run_uses_the_rules_and_exports_a_verified_model(tmp_path):
    train = _series(tmp_path / "train.jsonl", 24, 300, seed=0)
    test = _series(tmp_path / "test.jsonl", 10, 300, seed=1)
    model_dir = tmp_path / "model"
    command = [sys.executable, "-m", "trainer.task", "--train-data", train, "--test-data", test,
               "--model-dir", str(model_dir), "--max-steps", "4", "--hidden-units", "8",
               "--conv-filters", "8", "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert "auto: conv front end: 2 layers, total stride 2" in log
    assert "eval_fraction=auto: no hold-out" in log
    assert "auto: random-convolution features: about 4000 (median training length 300)" in log
    assert "biases fitted on 24 training sequences" in log
    config = json.loads((model_dir / "config.json").read_text())["model"]
    assert (config["conv_layers"], config["conv_stride"], config["sequence_norm"]) == (2, 2, "off")
    assert (config["random_features"], config["reference_length"]) == (4000, 300)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert "eval" not in metrics and metrics["test"]["examples"] == 10
    assert metrics["best_checkpoint"].endswith("ckpt-4")  # no hold-out: the last weights
    manifest = json.loads(next(model_dir.glob("export/[0-9]*/weights/weights.json")).read_text())
    assert [layer["stride"] for layer in manifest["frontend"]] == [2, 1]
    assert manifest["sequence_norm"] is False and manifest["frontend_branch"] is True
    # Dilations 1..32 for 300 steps: 84 kernels x 6 dilations x 8 biases.
    assert manifest["random_features"]["dilations"] == [1, 2, 4, 8, 16, 32]
    assert manifest["shapes"]["random_features/biases"] == [6, 84, 8]
    assert manifest["shapes"]["head/kernel"][0] == 2 * 8 + 8 + 4032  # pooled, branch, random
    assert any(p.suffix == ".tflite" for p in model_dir.glob("export/[0-9]*/**/*"))
