"""The loop in-process on tiny data: NaN stops the run and saves nothing after it, an unreadable
newest checkpoint falls back to the one before, gradient accumulation equals a bigger batch,
summaries, metrics.json, the tuning report, warm start."""

import json
import logging
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import trainer.steps
import trainer.train
from trainer import checkpoints
from trainer.config import Config
from trainer.train import train_and_evaluate
from models import build_model
from trainer_testlib import max_difference, model_weights, tiny_config, tiny_data

pytestmark = pytest.mark.slow  # every test trains: one or more runs of the loop each


@pytest.fixture(autouse=True)
def no_export(monkeypatch):
    monkeypatch.setattr(trainer.train, "_export", lambda *args: {})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data):
    """6 steps, eval every 2, a tuning trial's metric file."""
    root = tmp_path_factory.mktemp("run")
    hp_file = root / "hypertune" / "output.metrics"
    patch = pytest.MonkeyPatch()
    patch.setenv("CLOUD_ML_HP_METRIC_FILE", str(hp_file))
    patch.setattr(trainer.train, "_export", lambda *args: {})
    try:
        final = train_and_evaluate(tiny_config(*data, root / "model", eval_every_steps=2,
                                               log_step_count_steps=2))
    finally:
        patch.undo()
    return {"final": final, "model_dir": root / "model", "hp_file": hp_file}


def _tags(folder) -> set:
    tags = set()
    for path in tf.io.gfile.glob(str(folder / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_summaries_hold_training_and_eval_tags(finished_run):
    model_dir = finished_run["model_dir"]
    train_tags = _tags(model_dir / "train")
    assert {"loss", "grad_norm", "learning_rate", "sequences_per_second", "tokens_per_second",
            "padding_share", "skipped_records/train"} <= train_tags, train_tags
    eval_tags = _tags(model_dir / "eval")
    assert {"loss", "accuracy", "confusion_matrix", "labels"} <= eval_tags, eval_tags


def test_metrics_json_records_final_and_best(finished_run):
    metrics = json.loads((finished_run["model_dir"] / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert [h["step"] for h in metrics["history"]] == [2, 4, 6]
    best = min(metrics["history"], key=lambda h: h["loss"])
    assert metrics["best"] == {"metric": "loss", "value": best["loss"], "step": best["step"]}
    assert metrics["best_checkpoint"].endswith(f"ckpt-{best['step']}")
    assert {"eval", "test"} <= metrics.keys() and metrics["sequences_per_second"] > 0


def test_tuning_trial_reports_every_evaluation(finished_run):
    lines = [json.loads(line) for line in finished_run["hp_file"].read_text().splitlines()]
    assert [int(line["global_step"]) for line in lines] == [2, 4, 6]
    history = {h["step"]: h["loss"] for h in finished_run["final"]["history"]}
    for line in lines:
        assert float(line["loss"]) == pytest.approx(history[int(line["global_step"])])


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    model_dir = tmp_path / "model"
    train_and_evaluate(tiny_config(*data, model_dir, max_steps=4, save_checkpoints_steps=2))
    good = model_weights(str(model_dir / "checkpoints" / "ckpt-4"))

    real_loss_terms = trainer.steps.loss_terms

    def poisoned(*args, **kwargs):
        weighted_sum, total_weight = real_loss_terms(*args, **kwargs)
        return weighted_sum * float("nan"), total_weight

    monkeypatch.setattr(trainer.steps, "loss_terms", poisoned)
    with pytest.raises(FloatingPointError, match=r"at step 5\b.*ckpt-4"):
        train_and_evaluate(tiny_config(*data, model_dir, max_steps=8, save_checkpoints_steps=2))
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-4")
    assert not list((model_dir / "checkpoints").glob("ckpt-6*"))
    assert max_difference(good, model_weights(str(model_dir / "checkpoints" / "ckpt-4"))) == 0.0


def test_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, data, caplog):
    model_dir = tmp_path / "model"
    train_and_evaluate(tiny_config(*data, model_dir, max_steps=6, save_checkpoints_steps=2))
    data_file = model_dir / "checkpoints" / "ckpt-6.data-00000-of-00001"
    data_file.write_bytes(b"\x5a" * data_file.stat().st_size)
    with caplog.at_level(logging.INFO):
        final = train_and_evaluate(tiny_config(*data, model_dir, max_steps=8, save_checkpoints_steps=2))
    messages = caplog.text
    assert "ckpt-6 cannot be read" in messages
    assert "resumed from" in messages and "ckpt-4 at step 4" in messages
    assert final["steps"] == 8 and final["trained_steps_this_run"] == 4


def test_gradient_accumulation_equals_one_bigger_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("accum")
    # 54 records in a fixed order (no shuffle, no buckets): 3 steps read the same 48 records
    # whether as micro-batches 8+8 or as batches of 16.
    data = tiny_data(root, train_every=5)
    common = dict(max_steps=3, shuffle_buffer=1, bucketing=False, clip_norm=0.5)
    big = train_and_evaluate(tiny_config(*data, root / "big", batch_size=16, **common))
    accumulated = train_and_evaluate(tiny_config(*data, root / "accum", batch_size=8, grad_accum_steps=2,
                                                 **common))
    small = train_and_evaluate(tiny_config(*data, root / "small", batch_size=8, **common))
    weights = {name: model_weights(str(root / name / "checkpoints" / "ckpt-3"))
               for name in ("big", "accum", "small")}
    assert max_difference(weights["big"], weights["accum"]) < 1e-6
    assert max_difference(weights["big"], weights["small"]) > 1e-4  # the comparison can fail
    assert big["history"][-1]["loss"] == pytest.approx(accumulated["history"][-1]["loss"], abs=1e-6)
    assert small["steps"] == 3


def test_warm_start_copies_only_the_matching_variables(tmp_path, data):
    source_dir = tmp_path / "source"
    train_and_evaluate(tiny_config(*data, source_dir, max_steps=4))
    source = build_model(Config.load(str(source_dir)).model)
    tf.train.Checkpoint(model=source).read(tf.train.latest_checkpoint(str(source_dir / "best"))).expect_partial()
    target = build_model(Config.load(str(source_dir)).model)
    copied = checkpoints.warm_start(target, str(source_dir), "encoder", target.model_config)
    assert copied and all("encoder" in name for name in copied)
    for mine, theirs in zip(target.variables, source.variables):
        same = np.array_equal(mine.numpy(), theirs.numpy())
        assert same == ("encoder" in mine.path.split("/", 1)[-1]), mine.path

    wider = build_model(Config.load(str(source_dir)).model.__class__(
        **{**Config.load(str(source_dir)).model.to_dict(), "hidden_units": 12}))
    with pytest.raises(ValueError, match="shapes differ"):
        checkpoints.warm_start(wider, str(source_dir), "encoder", wider.model_config)

    final = train_and_evaluate(tiny_config(*data, tmp_path / "target", max_steps=2,
                                           warm_start_from=str(source_dir), warm_start_vars="encoder|head"))
    assert final["steps"] == 2


def test_early_stopping_waits_patience_evaluations_without_min_delta_improvement(tmp_path, data):
    # No later evaluation can beat the first by 10: the run stops at the 1 + patience-th one.
    final = train_and_evaluate(tiny_config(*data, tmp_path / "model", max_steps=20, eval_every_steps=2,
                                           early_stopping_patience=2, early_stopping_min_delta=10.0))
    assert final["stopped_early"] and final["steps"] == 6
    assert final["best"]["step"] == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "model" / "checkpoints")).endswith("ckpt-6")
    again = train_and_evaluate(tiny_config(*data, tmp_path / "model", max_steps=20, eval_every_steps=2,
                                           early_stopping_patience=2, early_stopping_min_delta=10.0))
    assert again["steps"] == 6 and again["trained_steps_this_run"] == 0  # a stopped run stays stopped


def test_auto_patience_stops_a_run_after_a_fifth_of_its_evaluations(tmp_path, data, caplog):
    # 40 planned evaluations: patience ceil(0.2 x 40) = 8, so the run ends at evaluation 1 + 8.
    with caplog.at_level(logging.INFO):
        final = train_and_evaluate(tiny_config(*data, tmp_path / "auto", max_steps=40, eval_every_steps=1,
                                               early_stopping_min_delta=10.0))
    assert "early_stopping_patience=auto: stop after 8 evaluations" in caplog.text
    assert final["stopped_early"] and final["steps"] == 9 and final["best"]["step"] == 1
    never = train_and_evaluate(tiny_config(*data, tmp_path / "never", max_steps=12, eval_every_steps=1,
                                           early_stopping_min_delta=10.0, early_stopping_patience=0))
    assert not never["stopped_early"] and never["steps"] == 12


def test_xla_step_trains_like_the_plain_one(tmp_path, data):
    plain = train_and_evaluate(tiny_config(*data, tmp_path / "plain", max_steps=4, jit_compile="off"))
    xla = train_and_evaluate(tiny_config(*data, tmp_path / "xla", max_steps=4, jit_compile="on"))
    assert xla["history"][-1]["loss"] == pytest.approx(plain["history"][-1]["loss"], abs=1e-4)


def _checkpoint_bytes(model_dir) -> int:
    folder = model_dir / "checkpoints"
    newest = tf.train.latest_checkpoint(str(folder))
    return sum(p.stat().st_size for p in folder.glob(pathlib.Path(newest).name + ".*"))


def test_checkpoints_hold_the_model_not_the_data(tmp_path):
    # The same model on 45 and on 270 cached training records: the checkpoint does not grow with
    # the data (an iterator checkpoint carried the cached split and the shuffle buffer).
    sizes = {}
    for every in (6, 1):
        (tmp_path / f"data{every}").mkdir()
        data = tiny_data(tmp_path / f"data{every}", train_every=every)
        model_dir = tmp_path / f"model{every}"
        train_and_evaluate(tiny_config(*data, model_dir, max_steps=3, cache=True))
        sizes[every] = _checkpoint_bytes(model_dir)
    newest = tf.train.latest_checkpoint(str(tmp_path / "model1" / "checkpoints"))
    parameters = sum(int(np.prod(shape)) for name, shape in tf.train.list_variables(newest)
                     if name.startswith("optimizer/_trainable_variables/"))  # Keras 3 tracks them there
    assert abs(sizes[1] - sizes[6]) < 4096, sizes
    # model + two Adam slots, float32, plus a few kilobytes of counters and RNG state
    assert sizes[1] < 3 * 4 * parameters + 64 * 1024, (sizes, parameters)
