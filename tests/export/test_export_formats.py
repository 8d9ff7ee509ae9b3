"""One table of runtime formats: every consumer reads it, and it refuses what would collide."""

import dataclasses

import pytest

from export import formats
from export.saved_model import ExportOptions
from trainer.config import TrainConfig


def test_the_table_holds_tflite_then_onnx_after_the_saved_model():
    assert formats.format_names() == ("saved_model", "tflite", "onnx")
    assert [f.name for f in formats.requested(["onnx", "saved_model", "tflite"])] == ["tflite", "onnx"]


def test_a_taken_name_or_folder_is_refused():
    tflite = formats.RUNTIME_FORMATS["tflite"]
    with pytest.raises(ValueError, match="already registered"):
        formats.register_format(tflite)
    with pytest.raises(ValueError, match="already used"):
        formats.register_format(dataclasses.replace(tflite, name="tflite2"))
    with pytest.raises(ValueError, match="already registered"):
        formats.register_format(dataclasses.replace(tflite, name="saved_model", folder="x"))
    assert formats.format_names() == ("saved_model", "tflite", "onnx")


def test_unknown_formats_fail_at_configuration_time_naming_the_choices():
    with pytest.raises(ValueError, match="saved_model.*tflite.*onnx.*'tfjs'"):
        TrainConfig(export_formats="saved_model,tfjs")
    with pytest.raises(ValueError, match="tfjs"):
        ExportOptions(formats=("tfjs",))
    TrainConfig(export_formats="saved_model,tflite,onnx")  # all known, onnx installed here


def test_a_format_whose_package_is_missing_says_how_to_install_it(monkeypatch):
    missing = dataclasses.replace(formats.RUNTIME_FORMATS["onnx"], requires="no_such_package_xyz")
    monkeypatch.setitem(formats.RUNTIME_FORMATS, "onnx", missing)
    with pytest.raises(ValueError, match=r"needs the no_such_package_xyz package: pip install"):
        ExportOptions(formats=("saved_model", "onnx"))


def test_largest_diff_reads_only_the_named_outputs_of_each_signature():
    from export.parity import largest_diff

    report = {"serving_default": {"logits": 2e-6, "probabilities": 5e-7, "classes": 3.0},
              "text": {"logits": 4e-6}, "ok": True, "skipped": "uncertainty"}
    assert largest_diff(report) == 4e-6
    assert largest_diff(report, ("classes",)) == 3.0
    assert largest_diff({}) == 0.0


def test_export_options_come_from_the_runs_train_fields_and_defaults_agree():
    from export import options_from_train_config

    train = TrainConfig(export_formats="saved_model", export_quantize=True, export_mc_samples=7, seed=5)
    expected = dict(formats=("saved_model",), quantize=True, mc_samples=7, mc_seed=5)
    got = options_from_train_config(train)
    assert {name: getattr(got, name) for name in expected} == expected
    # config.json's "train" dict gives the same options; an override wins.
    as_dict = options_from_train_config(dataclasses.asdict(train), quantize=False)
    assert dataclasses.replace(got, quantize=False) == as_dict
    # A run's config without export fields (another version's) exports as a default run would.
    defaults = TrainConfig()
    assert options_from_train_config({"seed": defaults.seed}) == options_from_train_config(defaults)
