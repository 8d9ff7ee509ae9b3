"""One real search, end to end, then a killed and resumed one in the same tuning dir.

Run A: 3 random trials of the tiny trainer -> results table, per-trial model dirs, flat tuner
memory, the best trial retrained (deterministic ops) and exported with the same objective.
Run B: `--max-trials 4`, SIGKILLed while trial 3 trains. Run C: the same command again: trial 3
runs once more, trials 0-2 are not touched.
"""

import csv
import json
import os
import subprocess

import pytest

from testlib import REPO_ROOT
from tune_testlib import TINY_FLAGS, data_flags, kill, run_tune, tune_command, tune_env, wait_for

pytestmark = pytest.mark.slow  # the tuner and its trials run in subprocesses (minutes)


@pytest.fixture(scope="module")
def search(tiny_data, tmp_path_factory):
    tuning_dir = tmp_path_factory.mktemp("search") / "tuning"
    args = ["--tuning-dir", str(tuning_dir), "--tuner", "random", "--max-trials", "3",
            *data_flags(tiny_data), *TINY_FLAGS, "--export-formats", "saved_model", "--export-mc-samples", "2",
            "--reproduce-tolerance", "1e-6"]
    result = run_tune(args)
    return {"dir": tuning_dir, "stdout": result.stdout, "args": args}


def _trial_dirs(tuning_dir):
    return sorted(p for p in (tuning_dir / "search").iterdir() if p.name.startswith("trial_"))


def _summaries(tuning_dir):
    return [json.loads((d / "summary.json").read_text()) for d in _trial_dirs(tuning_dir)
            if (d / "summary.json").exists()]


def test_results_table_lists_every_trial(search):
    rows = list(csv.DictReader((search["dir"] / "results.csv").open()))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    for row in rows:
        assert row["status"] == "COMPLETED"
        assert float(row["loss"]) > 0 and row["steps"] == "4" and float(row["seconds"]) > 0
        assert row["cell"] in ("lstm", "gru") and row["pooling"] in ("last", "mean", "max")
        assert 0.001 <= float(row["learning_rate"]) <= 0.03
    results = json.loads((search["dir"] / "results.json").read_text())
    assert results["objective"] == "loss" and results["direction"] == "min"
    best = min(results["trials"], key=lambda r: r["loss"])
    assert results["best_trial_id"] == best["trial_id"]
    assert "trial_id | status" in search["stdout"]


def test_each_trial_is_a_trainer_run_in_its_own_model_dir(search):
    rows = json.loads((search["dir"] / "results.json").read_text())["trials"]
    model_dirs = {r["model_dir"] for r in rows}
    assert len(model_dirs) == 3
    for row in rows:
        config = json.loads(open(os.path.join(row["model_dir"], "config.json")).read())
        assert config["model"]["cell"] == row["cell"] and config["model"]["pooling"] == row["pooling"]
        assert config["model"]["hidden_units"] == 4  # a fixed flag passes through
        assert config["train"]["max_steps"] == 4 and config["train"]["early_stopping_metric"] == "loss"
        metrics = json.loads(open(os.path.join(row["model_dir"], "metrics.json")).read())
        assert metrics["eval"]["loss"] == pytest.approx(row["loss"])  # the objective is our eval


def test_tuner_memory_does_not_grow_across_trials(search):
    summaries = _summaries(search["dir"])
    assert len(summaries) == 3 and len({s["tuner_pid"] for s in summaries}) == 1
    growth = summaries[-1]["tuner_rss_mb"] - summaries[0]["tuner_rss_mb"]
    # In-process trials grow ~9 MB each (and hundreds of MB for the first); subprocesses do not.
    assert growth < 8.0, [s["tuner_rss_mb"] for s in summaries]


def test_best_trial_is_retrained_exported_and_reproduces(search):
    best = json.loads((search["dir"] / "best.json").read_text())
    results = json.loads((search["dir"] / "results.json").read_text())
    assert best["trial_id"] == results["best_trial_id"]
    assert best["reproduced"], best
    assert abs(best["retrained"] - best["trial_value"]) <= 1e-6
    assert os.path.exists(os.path.join(best["export"]["saved_model"], "saved_model.pb"))
    assert best["model_dir"].startswith(str(search["dir"] / "best"))


def _trainer_pids(config_path):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if config_path.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_killed_search_resumes_without_rerunning_finished_trials(search):
    tuning_dir = search["dir"]
    finished = {d.name: (d / "model" / "metrics.json").stat().st_mtime_ns for d in _trial_dirs(tuning_dir)}
    assert len(finished) == 3
    args = [a if a != "3" or search["args"][i - 1] != "--max-trials" else "4"
            for i, a in enumerate(search["args"])] + ["--no-retrain-best"]
    process = subprocess.Popen(tune_command(*args), cwd=REPO_ROOT, env=tune_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    config_path = str(tuning_dir / "search" / "trial_3" / "trial_config.json")
    try:
        wait_for(lambda: _trainer_pids(config_path), 120, "trial 3's trainer to start")
    finally:
        kill(process)  # the tuner only: its trainer child must die with it
    wait_for(lambda: not _trainer_pids(config_path), 10, "the orphaned trainer to die")
    assert not (tuning_dir / "search" / "trial_3" / "model" / "metrics.json").exists()

    run_tune(args)
    after = {d.name: d for d in _trial_dirs(tuning_dir)}
    assert sorted(after) == ["trial_0", "trial_1", "trial_2", "trial_3"]
    for name, mtime in finished.items():
        assert (after[name] / "model" / "metrics.json").stat().st_mtime_ns == mtime, f"{name} was re-run"
    assert (after["trial_3"] / "model" / "metrics.json").exists()
    rows = json.loads((tuning_dir / "results.json").read_text())["trials"]
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
