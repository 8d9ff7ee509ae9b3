"""Smoke test of bench/real_data.py on a tiny synthetic dense set: one short trainer run through
the CLI, 1-NN DTW beside it, the table row and the appended results file; CV mode on the
training file alone (no test file exists, so reading it would fail); and the text-signature
accuracy on a hand-made SavedModel (the newest version is the one measured)."""

import importlib.util
import json
import math
import random
import re

import pytest

from testlib import REPO_ROOT


def _load_bench():
    spec = importlib.util.spec_from_file_location("real_data", REPO_ROOT / "bench" / "real_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(n, rng):
    """Two classes of 2-channel sequences, 6..10 steps: slow vs fast sine, a little noise."""
    out = []
    for i in range(n):
        label = "slow" if i % 2 == 0 else "fast"
        freq = 0.3 if label == "slow" else 1.5
        steps = rng.randint(6, 10)
        features = [[math.sin(freq * t) + rng.gauss(0, 0.05), math.cos(freq * t)] for t in range(steps)]
        out.append({"id": i, "label": label, "length": steps, "features": features})
    return out


def _write_set(root, name, train, test=None):
    folder = root / name
    folder.mkdir(parents=True)
    for split, records in (("train", train), ("test", test)):
        if records is not None:
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.slow  # a trainer run through the CLI
def test_archive_split_ours_and_dtw(tmp_path, capsys):
    rng = random.Random(0)
    _write_set(tmp_path / "sets", "Toy", _records(20, rng), _records(10, rng))
    results, json_out = tmp_path / "results.md", tmp_path / "runs.json"
    bench = _load_bench()
    code = bench.main(["--datasets-dir", str(tmp_path / "sets"), "--sets", "Toy", "--seeds", "42",
                       "--baselines", "dtw", "--extra-flags", "--max-steps 4 --export-formats ''",
                       "--results-file", str(results), "--json-out", str(json_out)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"\[run\] Toy test ours seed 42: accuracy \d\.\d{4}", out)
    row = re.search(r"^\| Toy \| (\d\.\d{4}) \(n=1\) \| [\d.]+-[\d.]+ \| [\d.]+ \| not run \| (\d\.\d{4}), ",
                    out, re.M)
    assert row, out
    assert float(row.group(2)) >= 0.9  # DTW separates the two frequencies
    text = results.read_text()
    assert text.startswith("# Real-data benchmark") and "| Toy |" in text and "--max-steps 4" in text
    runs = json.loads(json_out.read_text())["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [("ours", 42), ("dtw", None)]
    assert runs[0]["steps"] == 4 and runs[0]["accuracy"] == runs[0]["metrics_accuracy"]
    # The table's and the log's accuracy are the run's, a share of the 10 test sequences.
    assert row.group(1) == f"{runs[0]['accuracy']:.4f}"
    assert f"ours seed 42: accuracy {runs[0]['accuracy']:.4f}" in out
    assert runs[0]["accuracy"] * 10 == pytest.approx(round(runs[0]["accuracy"] * 10))

    bench.main(["--datasets-dir", str(tmp_path / "sets"), "--sets", "Toy", "--skip-ours",
                "--baselines", "dtw", "--results-file", str(results)])
    assert results.read_text().count("# Real-data benchmark") == 1
    assert results.read_text().count("\n## ") == 2  # appended, not rewritten


def test_cv_uses_train_only(tmp_path, capsys):
    rng = random.Random(1)
    _write_set(tmp_path / "sets", "TrainOnly", _records(20, rng))  # no test.jsonl at all
    bench = _load_bench()
    folds = bench.stratified_folds(["a"] * 7 + ["b"] * 13, 3, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(20))
    assert [len(f) for f in folds] in ([7, 7, 6], [7, 6, 7], [6, 7, 7])
    json_out = tmp_path / "runs.json"
    code = bench.main(["--datasets-dir", str(tmp_path / "sets"), "--sets", "TrainOnly", "--skip-ours",
                       "--cv", "4", "--folds-limit", "2", "--baselines", "dtw,tfidf_svc",
                       "--results-file", str(tmp_path / "r.md"), "--json-out", str(json_out)])
    assert code == 0
    assert "| TrainOnly (4-fold CV on train, 2 folds) | not run |" in capsys.readouterr().out
    runs = json.loads(json_out.read_text())["runs"]
    dtw = [r for r in runs if r["method"] == "dtw"]
    assert [r["split"] for r in dtw] == ["fold0", "fold1"] and all(r["accuracy"] is not None for r in dtw)
    assert not any(r["method"] == "tfidf_svc" for r in runs)  # a text baseline does not apply to series


def test_text_signature_accuracy_uses_newest_version(tmp_path):
    import tensorflow as tf

    class Keyword(tf.Module):
        """A `text` signature answering "flask" when the text names it, else `default`."""

        def __init__(self, default):
            super().__init__()
            self.default = default

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def text(self, strings):
            named = tf.strings.regex_full_match(tf.strings.lower(strings), ".*flask.*")
            return {"classes": tf.where(named, tf.constant("flask"), tf.constant(self.default))}

    export = tmp_path / "export"
    for version, default in ((9, "flask"), (10, "django")):  # 10 > 9 numerically, not as strings
        module = Keyword(default)
        tf.saved_model.save(module, str(export / str(version)), signatures={"text": module.text})
    (export / "tmp-99").mkdir()  # an unverified export is never measured
    bench = _load_bench()
    newest = bench.newest_export(export)
    assert newest.name == "10"
    texts = ["A Flask extension", "Django admin theme", "flask-login helpers", "views for django", "misc"]
    labels = ["flask", "django", "flask", "flask", "django"]
    assert bench.text_signature_accuracy(newest, texts, labels, batch_size=2) == 0.8
