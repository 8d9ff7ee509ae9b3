"""Smoke test of bench/rnn_throughput.py: the trainer path, the CLI and both Keras peers run end
to end on a tiny workload and the ratios and the checkpoint size are printed (the speeds
themselves mean nothing here)."""

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
    rows = bench.main(["--quick", "--sequences", "128", "--no-jit", "--cli-steps", "2,6"])
    out = capsys.readouterr().out
    assert [label.split(" (")[0].split(",")[0] for label, _, _, _ in rows] == [
        "seqtrain trainer path", "  python -m trainer.task",
        "Keras Masking+LSTM dropout=recurrent_dropout=0.25", "Keras Masking+LSTM no dropout"]
    assert all(row[1] > 0 for row in rows)
    assert "ratio vs Keras dropout:" in out and "ratio vs Keras no dropout:" in out
    assert "(target >= 5.5)" in out and "(target >= 1.5)" in out
    assert "ratio CLI / trainer loop:" in out
    assert "inference batch  1: SavedModel" in out and "inference batch 64: SavedModel" in out


def test_checkpoint_size_is_the_variables_it_holds(tmp_path):
    """The CLI row's checkpoint figure: one checkpoint of the pinned model is its variables
    (weights, Adam's slots, RNG, counters) plus at most 64 KB, whatever the data."""
    bench = _load_bench()
    data = bench.make_data(96)
    train = tmp_path / "train.jsonl"
    bench.write_jsonl(str(train), data)
    speed, _, cli = bench.bench_cli(str(train), str(train), False, True, str(tmp_path), (2, 4))
    assert speed > 0 and cli["checkpoints_kept"] >= 1
    # LSTM 128 over 32 features + a 5-class head, times 3 (weights and two Adam slots), float32.
    assert cli["variable_bytes"] > 3 * 4 * (4 * 128 * (32 + 128 + 1))
    assert cli["variable_bytes"] <= cli["checkpoint_bytes"] <= cli["variable_bytes"] + 64 * 1024
