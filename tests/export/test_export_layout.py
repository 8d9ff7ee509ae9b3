"""Where a verified export goes: TF Serving's version folders locally, the export dir itself in
Vertex AI's layout (chosen when the export dir is $AIP_MODEL_DIR)."""

import pytest

from export.saved_model import ExportOptions, publish_into, uses_vertex_layout


def test_vertex_layout_when_the_export_dir_is_aip_model_dir(monkeypatch):
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    assert not uses_vertex_layout("gs://b/model")
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://b/model/")
    assert uses_vertex_layout("gs://b/model") and uses_vertex_layout("gs://b/model/")
    assert not uses_vertex_layout("gs://b/other")  # an explicit --export-dir keeps versions
    assert not uses_vertex_layout("gs://b/model", "versions")
    assert uses_vertex_layout("/tmp/anywhere", "vertex")
    with pytest.raises(ValueError, match="layout"):
        ExportOptions(layout="flat")


def test_publish_into_replaces_an_earlier_model_and_leaves_other_files(tmp_path):
    target = tmp_path / "aip"
    (target / "variables").mkdir(parents=True)
    (target / "variables" / "old.index").write_text("old")
    (target / "tflite").mkdir()
    (target / "tflite" / "model_quantized.tflite").write_text("old")  # the new export has none
    (target / "saved_model.pb").write_text("old")
    (target / "notes.txt").write_text("the user's")
    temp = target / "tmp-5"
    (temp / "variables").mkdir(parents=True)
    (temp / "variables" / "variables.index").write_text("new")
    (temp / "tflite").mkdir()
    (temp / "tflite" / "model.tflite").write_text("new")
    (temp / "saved_model.pb").write_text("new")
    publish_into(str(temp), str(target))
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt", "saved_model.pb", "tflite", "variables"]
    assert (target / "saved_model.pb").read_text() == "new"
    assert [p.name for p in (target / "variables").iterdir()] == ["variables.index"]
    assert [p.name for p in (target / "tflite").iterdir()] == ["model.tflite"]
