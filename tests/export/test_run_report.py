"""The run report (`export/run_report.py`): built from a model dir's files, self-contained, and
drawn by a real browser (headless Chromium) into a page that is not blank and has every section.

The model dir is made without training: `prepare_data` on a slice of the bundled data, a
metrics.json as the trainer writes it, and train summaries. test_cli_smoke.py checks the report
of a real run."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from data.config import DataConfig
from data.prepare import prepare_data
from export.run_report import REPORT_FILE, SECTIONS, gather, write_report
from testlib import write_bundled_slice
from trainer.config import Config

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
LABELS = [str(i) for i in range(1, 10)]


def _metrics(history_steps=(4, 8, 12)):
    rng = np.random.default_rng(0)
    confusion = np.diag(np.full(9, 3)) + rng.integers(0, 2, (9, 9))
    per_class = {f"{kind}/{label}": float(rng.uniform(0.5, 1.0)) for kind in ("precision", "recall", "f1")
                 for label in LABELS}
    test = {"loss": 0.5, "accuracy": 0.8, "macro_f1": 0.78, "ece": 0.05, "examples": int(confusion.sum()),
            **per_class}
    return {
        "steps": 12, "trained_steps_this_run": 12, "train_seconds": 3.5, "sequences_per_second": 410.0,
        "tokens_per_second": 6500.0, "stopped_early": False, "best_checkpoint": "m/best/ckpt-8",
        "best": {"metric": "accuracy", "value": 0.8, "step": 8},
        "history": [{"step": s, "loss": 1.0 / s, "accuracy": 0.5 + s / 40} for s in history_steps],
        "test": test, "eval": dict(test),
        "predictions": {"split": "test", "labels": LABELS, "confusion": confusion.tolist(), "ece_bins": 15,
                        "reliability": {"count": [0] * 10 + [2, 5, 8, 10, 12],
                                        "confidence": [0.0] * 10 + [0.7, 0.77, 0.83, 0.9, 0.97],
                                        "accuracy": [0.0] * 10 + [0.5, 0.6, 0.9, 0.9, 1.0]}},
        "export": {"saved_model": "m/export/17", "version": 17, "layout": "versions",
                   "signatures": ["embed", "serving_default", "uncertainty"], "verified": True,
                   "tflite": "m/export/17/tflite/model.tflite", "tflite_bytes": 44852,
                   "tflite_verified": True, "tflite_max_diff": 7e-07, "tflite_accuracy_float": 0.8},
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    train, test = str(root / "train.jsonl"), str(root / "test.jsonl")
    write_bundled_slice("train", train, 6)
    write_bundled_slice("test", test, 20)
    folder = root / "model"
    prepare_data(DataConfig(train_data=train, eval_data=test, test_data=test), str(folder), seed=3)
    Config().save(str(folder))
    (folder / "metrics.json").write_text(json.dumps(_metrics()))
    writer = tf.summary.create_file_writer(str(folder / "train"))
    with writer.as_default():
        for step in (4, 8, 12):
            tf.summary.scalar("loss", 2.0 / step, step=step)
            tf.summary.scalar("sequences_per_second", 400.0 + step, step=step)
            tf.summary.scalar("tokens_per_second", 6000.0 + step, step=step)
            tf.summary.scalar("padding_share", 0.1, step=step)
    writer.close()
    return folder


def test_gather_reads_summaries_manifest_and_prepared_splits(model_dir):
    facts = gather(str(model_dir))
    assert facts["train"]["loss"] == [(4, 0.5), (8, 0.25), (12, pytest.approx(2.0 / 12))]
    assert set(facts["splits"]) == {"train", "eval", "test"}
    assert sum(facts["splits"]["train"]["class_counts"]) == facts["manifest"]["splits"]["train"]["num_records"]
    assert len(facts["splits"]["test"]["lengths"]) == facts["manifest"]["splits"]["test"]["num_records"]
    assert facts["export"]["version"] == 17  # metrics.json's export when none is given


def test_report_is_one_self_contained_page_with_every_section(model_dir):
    path = write_report(str(model_dir))
    assert path.endswith(REPORT_FILE)
    page = open(path).read()
    for name in SECTIONS:
        assert f"id='{name}'" in page
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) == 6, len(images)  # curves, confusion, reliability, classes, lengths, throughput
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "ECE" in page and "best checkpoint" in page and "Skipped records" in page


def test_report_without_evaluation_or_export_says_so(model_dir, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(model_dir, folder)
    metrics = _metrics(history_steps=())
    for key in ("predictions", "test", "eval", "best"):
        metrics.pop(key)
    metrics["export"] = {}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    page = open(write_report(str(folder))).read()
    assert "No evaluation split" in page and "Nothing exported" in page


def test_a_vertex_export_gets_a_copy_beside_the_model(model_dir, tmp_path):
    beside = tmp_path / "aip"
    beside.mkdir()
    write_report(str(model_dir), {"saved_model": str(beside), "layout": "vertex", "version": 3})
    assert "<section id='export'>" in (beside / REPORT_FILE).read_text()


def _chromium(*flags, timeout=120):
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *flags],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # headless Chromium
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(model_dir, tmp_path):
    import matplotlib.image

    url = "file://" + write_report(str(model_dir))
    shot = tmp_path / "report.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1200,2000", "--enable-logging=stderr",
                       "--v=0", url)
    assert shot.exists(), result.stderr[-3000:]
    assert "Uncaught" not in result.stderr and "SyntaxError" not in result.stderr, result.stderr[-3000:]
    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 0.05, "the screenshot is (nearly) one colour"
    assert (pixels.min(axis=-1) < 0.5).mean() > 0.01, "almost nothing dark drawn: no text, no figures"
    dom = _chromium("--dump-dom", url).stdout
    for name in SECTIONS:
        assert f'id="{name}"' in dom, f"section {name} missing from the rendered page"
    assert dom.count("<img") == 6
