"""ModelConfig: field names (they are flags), validation messages, JSON round trip."""

import dataclasses
import json

import pytest

from models.config import ModelConfig, derived_fields, hyperparameter_fields


def test_hyperparameter_and_derived_fields():
    assert [f.name for f in hyperparameter_fields()] == [
        "cell", "hidden_units", "num_layers", "bidirectional", "pooling", "head",
        "embedding_dim", "input_keep_prob", "state_keep_prob", "output_keep_prob",
        "variational_recurrent", "mask_per_example", "update_keep_prob", "forget_bias",
        "label_smoothing", "class_weighting", "prior_bias_init", "sequence_norm", "conv_layers",
        "conv_filters", "conv_kernel_size", "conv_stride", "conv_branch", "random_features",
        "ngram_orders", "ngram_buckets", "ngram_dim"]
    assert [f.name for f in derived_fields()] == [
        "input_kind", "target_kind", "feature_dim", "vocab_size", "num_classes",
        "feature_mean", "feature_std", "class_counts", "num_train_examples", "reference_length"]


def test_defaults_are_valid_and_frozen():
    config = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_units = 3


@pytest.mark.parametrize("fields,message", [
    ({"input_keep_prob": 0.0}, r"input_keep_prob: expected a keep probability in \(0, 1\], got 0.0"),
    ({"state_keep_prob": 1.5}, "state_keep_prob: expected"),
    ({"update_keep_prob": -0.1}, "update_keep_prob: expected"),
    ({"cell": "transformer"}, r"cell: expected one of .*'lstm'.*got 'transformer'"),
    ({"pooling": "sum"}, "pooling: expected one of"),
    ({"class_weighting": "inverse"}, "class_weighting: expected"),
    ({"label_smoothing": 1.0}, r"label_smoothing: expected a value in \[0, 1\) or -1 \(auto\), got 1.0"),
    ({"label_smoothing": -0.5}, r"label_smoothing: expected .* got -0.5"),
    ({"embedding_dim": 0}, r"embedding_dim: expected an integer >= 1 or -1 \(auto\), got 0"),
    ({"hidden_units": 0}, "hidden_units: expected an integer >= 1, got 0"),
    ({"head": "tagging", "target_kind": "label"}, "cannot train on target_kind='label'"),
    ({"head": "binary", "num_classes": 3}, "exactly 2 classes"),
    ({"feature_dim": 2, "feature_mean": (0.0,)}, "feature_mean: expected 2 values"),
    ({"feature_dim": 1, "feature_std": (0.0,)}, "feature_std: expected every value > 0"),
    ({"num_classes": 3, "class_counts": (1, 2)}, "class_counts: expected 3 values"),
    ({"target_kind": "tags", "pooling": "attention"}, "attention weights would never train"),
])
def test_invalid_values_say_expected_and_got(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)


def test_json_round_trip_restores_tuples():
    config = ModelConfig(feature_dim=2, feature_mean=(0.5, 1), feature_std=[2, 3],
                         num_classes=2, class_counts=[3, 4])
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.feature_std, tuple) and restored.feature_std == (2.0, 3.0)
    hash(restored)


def test_unknown_field_is_an_error():
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['hiden_units'\]"):
        ModelConfig.from_dict({"hiden_units": 3})


def test_check_buildable_needs_data_fields():
    with pytest.raises(ValueError, match="num_classes: expected >= 1"):
        ModelConfig().check_buildable()
    with pytest.raises(ValueError, match="feature_dim: expected >= 1"):
        ModelConfig(num_classes=3).check_buildable()
    with pytest.raises(ValueError, match="vocab_size: expected >= 2"):
        ModelConfig(num_classes=3, input_kind="text").check_buildable()
    ModelConfig(num_classes=3, input_kind="tokens", vocab_size=5).check_buildable()
