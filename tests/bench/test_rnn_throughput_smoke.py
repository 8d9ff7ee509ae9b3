"""Smoke test of bench/rnn_throughput.py: the trainer path and both Keras peers run end to end
on a tiny workload and the ratios are printed (the speeds themselves mean nothing here)."""

import importlib.util
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "rnn_throughput", REPO_ROOT / "bench" / "rnn_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_ratios(capsys):
    bench = _load_bench()
    rows = bench.main(["--quick", "--sequences", "128", "--no-jit"])
    out = capsys.readouterr().out
    assert [label.split(" (")[0] for label, _, _, _ in rows] == [
        "seqtrain trainer path", "Keras Masking+LSTM dropout=recurrent_dropout=0.25",
        "Keras Masking+LSTM no dropout"]
    assert all(row[1] > 0 for row in rows)
    assert "ratio vs Keras dropout:" in out and "ratio vs Keras no dropout:" in out
    assert "(target >= 4.0)" in out and "(target >= 1.5)" in out
