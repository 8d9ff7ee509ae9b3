"""Smoke test of bench/rnn_throughput.py: the trainer path, the CLI and both Keras peers run end
to end on a tiny workload and the ratios and the checkpoint size are printed (the speeds
themselves mean nothing here)."""

import importlib.util

import pytest

from testlib import REPO_ROOT


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "rnn_throughput", REPO_ROOT / "bench" / "rnn_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the whole bench, CLI runs included
def test_quick_run_prints_ratios(capsys):
    bench = _load_bench()
    # The CLI rate is a difference of two runs: 158 steps apart (several seconds), not 14, which
    # start-up noise outweighed once preparation got faster (2 and 16 steps: 22.7 s and 21.7 s).
    rows = bench.main(["--quick", "--sequences", "128", "--no-jit", "--cli-steps", "2,160", "--skip-torch"])
    out = capsys.readouterr().out
    assert [label.split(" (")[0].split(",")[0] for label, _, _, _ in rows] == [
        "seqtrain trainer path", "  python -m trainer.task",
        "Keras Masking+LSTM dropout=recurrent_dropout=0.25", "Keras Masking+LSTM no dropout"]
    assert all(row[1] > 0 for row in rows)
    assert "ratio vs Keras dropout:" in out and "ratio vs Keras no dropout:" in out
    assert "(target >= 5.5)" in out and "(target >= 1.5)" in out
    assert "ratio CLI / trainer loop:" in out
    assert "every timed epoch:" in out
    assert "inference batch  1: SavedModel" in out and "inference batch 64: SavedModel" in out


@pytest.mark.slow  # a CLI run
def test_checkpoint_size_is_the_variables_it_holds(tmp_path):
    """The CLI row's checkpoint figure: one checkpoint of the pinned model is its variables
    (weights, Adam's slots, RNG, counters) plus at most 64 KB, whatever the data."""
    bench = _load_bench()
    data = bench.make_data(96)
    train = tmp_path / "train.jsonl"
    bench.write_jsonl(str(train), data)
    model_dir = str(tmp_path / "model")
    bench.run_cli(str(train), str(train), model_dir, 4, bench.cli_flags(False, True))
    checkpoint_bytes, variable_bytes = bench.checkpoint_sizes(model_dir)
    # LSTM 128 over 32 features + a 5-class head, times 3 (weights and two Adam slots), float32.
    assert variable_bytes > 3 * 4 * (4 * 128 * (32 + 128 + 1))
    assert variable_bytes <= checkpoint_bytes <= variable_bytes + 64 * 1024


def test_cli_rate_refuses_runs_too_close_to_time(tmp_path, monkeypatch):
    """A longer run that finished no later than the shorter one gives no rate, not a negative
    or infinite one."""
    bench = _load_bench()
    monkeypatch.setattr(bench, "warm_up_imports", lambda: None)
    monkeypatch.setattr(bench, "run_cli", lambda *args: 15.0)
    with pytest.raises(RuntimeError, match="too few steps apart"):
        bench.bench_cli("train", "test", False, True, str(tmp_path), (2, 6))


@pytest.mark.slow  # a PyTorch process
def test_pytorch_peer_trains_the_same_workload():
    """The optional PyTorch row (the `bench-torch` extra): nn.LSTM over the padded workload in
    its own process gives a rate and a finite loss."""
    pytest.importorskip("torch")
    bench = _load_bench()
    speed, loss, _, rates = bench.bench_torch(bench.make_data(128), epochs=2)
    assert speed > 0 and loss == loss and 0.0 < loss < 10.0
    assert len(rates) == 2 and speed == max(rates)  # the row is its fastest timed epoch


@pytest.mark.slow  # the trainer path's row trains
def test_without_torch_the_pytorch_row_says_how_to_get_it(monkeypatch, capsys):
    bench = _load_bench()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    assert bench.bench_torch(bench.make_data(8), epochs=1) is None
    rows = bench.main(["--sequences", "64", "--epochs", "1", "--no-jit", "--skip-cli", "--skip-keras"])
    assert [label for label, *_ in rows] == ["seqtrain trainer path (bucketing=True, jit=False)"]
    assert 'PyTorch row skipped: torch is not installed (pip install -e ".[bench-torch]")' in capsys.readouterr().out
