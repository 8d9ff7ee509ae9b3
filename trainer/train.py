"""`train_and_evaluate(config)`: the loop that decides *when* to train, evaluate, save and stop.

Top to bottom: prepare the data (or reuse the model dir's), build the model and optimizer,
restore the newest readable checkpoint (model, optimizer, step, RNG, data iterator and
early-stopping state), then train with an evaluation every epoch (or `eval_every_steps`),
keeping the best checkpoint apart. At the end the best weights are evaluated once on the test
split and exported. What a step does lives in `trainer.steps`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import sys
import time
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from data.pipeline import make_dataset
from data.prepare import prepare_data
from models import EvalMetrics, build_model
from models.losses import class_weights_from_counts
from trainer import report, summaries
from trainer.config import Config
from trainer.optimization import make_optimizer
from trainer.steps import make_eval_step, make_train_step, model_keys

LOWER_IS_BETTER = ("loss", "ece", "expected_calibration_error")


def resolve_dirs(config: Config) -> Config:
    """Fills model and export dirs from flags, Vertex AI's AIP_* variables or a fresh default."""
    train = config.train
    model_dir = train.model_dir or os.environ.get("AIP_CHECKPOINT_DIR", "")
    if not model_dir:
        model_dir = "runs/" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    export_dir = train.export_dir or os.environ.get("AIP_MODEL_DIR", "") or tf.io.gfile.join(model_dir, "export")
    return dataclasses.replace(config, train=dataclasses.replace(train, model_dir=model_dir, export_dir=export_dir))


def with_data_spec(config: Config, spec) -> Config:
    """Copies the numbers the model needs from the data spec into the model config."""
    model = dataclasses.replace(
        config.model,
        input_kind="tokens" if spec.is_tokens else "features",
        target_kind=spec.target_kind,
        feature_dim=spec.feature_dim,
        vocab_size=spec.vocab_size,
        num_classes=spec.num_classes,
        feature_mean=tuple(spec.feature_mean),
        feature_std=tuple(spec.feature_std),
        class_counts=tuple(spec.label_counts),
        num_train_examples=spec.num_train_examples,
    )
    return dataclasses.replace(config, model=model)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def evaluate(eval_step, dataset, model_config, label_names) -> Dict[str, float]:
    """Runs one pass over a finite dataset; returns the metrics dict (loss included)."""
    metrics = EvalMetrics(model_config.resolved_head, model_config.num_classes, label_names)
    loss_sum, weight_sum, examples = 0.0, 0.0, 0
    for batch in dataset:
        logits, weighted_sum, total_weight = eval_step(model_keys(batch))
        metrics.update(logits.numpy(), {k: v.numpy() for k, v in batch.items()})
        loss_sum += float(weighted_sum)
        weight_sum += float(total_weight)
        examples += int(batch["lengths"].shape[0])
    result = dict(metrics.result())
    result["loss"] = loss_sum / max(weight_sum, 1e-12)
    result["examples"] = examples
    return result, metrics


def _restore_newest_readable(checkpoint, manager) -> Optional[str]:
    """Restores the newest checkpoint that can be read, warning about any that cannot."""
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            logging.warning("checkpoint %s cannot be read (%s); trying the one before", path, error)
    return None


def train_and_evaluate(config: Config) -> Dict[str, object]:
    """Trains, evaluates and exports as `config` says; returns the final report dict."""
    config = resolve_dirs(config)
    tc = config.train
    model_dir = tc.model_dir
    tf.io.gfile.makedirs(model_dir)
    if tc.op_determinism:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(tc.seed)

    prepared = prepare_data(config.data, model_dir, tc.seed)
    spec = prepared.spec
    config = with_data_spec(config, spec)
    config.save(model_dir)
    mc = config.model
    head = mc.resolved_head

    model = build_model(mc)
    num_train = prepared.splits["train"].num_records
    steps_per_epoch = max(1, math.ceil(num_train / config.data.batch_size))
    total_steps = tc.max_steps or tc.num_epochs * steps_per_epoch
    eval_every = tc.eval_every_steps or steps_per_epoch
    save_every = tc.save_checkpoints_steps or eval_every
    optimizer = make_optimizer(tc, total_steps)
    optimizer.build(model.trainable_variables)

    train_ds = make_dataset(prepared.splits["train"].files, spec, config.data, training=True, seed=tc.seed)
    eval_split = prepared.splits.get("eval")
    eval_ds = (make_dataset(eval_split.files, spec, config.data, training=False, seed=tc.seed)
               if eval_split and eval_split.num_records else None)
    iterator = iter(train_ds)
    rng = tf.random.Generator.from_seed(tc.seed)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    better = higher_is_better(tc.early_stopping_metric)
    best_value = tf.Variable(-np.inf if better else np.inf, dtype=tf.float64, name="best_value")
    evals_without_improvement = tf.Variable(0, dtype=tf.int64, name="evals_without_improvement")
    stopped_early = tf.Variable(False, name="stopped_early")
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step, rng=rng, iterator=iterator, best_value=best_value,
        evals_without_improvement=evals_without_improvement, stopped_early=stopped_early)
    manager = tf.train.CheckpointManager(
        checkpoint, tf.io.gfile.join(model_dir, "checkpoints"), max_to_keep=tc.keep_checkpoint_max,
        step_counter=step)
    best_checkpoint = tf.train.Checkpoint(model=model)  # its file name carries the step
    best_manager = tf.train.CheckpointManager(
        best_checkpoint, tf.io.gfile.join(model_dir, "best"), max_to_keep=1, step_counter=step)
    restored = _restore_newest_readable(checkpoint, manager)
    if restored:
        logging.info("resumed from %s at step %d", restored, int(step))

    class_weights = (None if mc.class_weighting == "none" else
                     tf.constant(class_weights_from_counts(mc.class_counts, mc.class_weighting), tf.float32))
    train_step = make_train_step(
        model, optimizer, head, clip_norm=tc.clip_norm, label_smoothing=mc.label_smoothing,
        class_weights=class_weights, element_spec=train_ds.element_spec, jit_compile=tc.jit_compile)
    eval_step = make_eval_step(model, head, element_spec=train_ds.element_spec)
    writers = summaries.Writers(model_dir)
    writers.skipped_records(prepared, step=int(step))

    def run_evaluation() -> Dict[str, float]:
        result, metrics = evaluate(eval_step, eval_ds, mc, spec.labels)
        writers.evaluation(result, metrics.confusion_matrix(), spec.labels, step=int(step))
        summaries.report_hypertune(tc.early_stopping_metric, result, int(step))
        return result

    started = time.time()
    trained_steps = 0
    history = []
    print(f"training {num_train} sequences, {steps_per_epoch} steps/epoch, up to {total_steps} steps; "
          f"model dir {model_dir}")
    progbar = None
    window = summaries.Throughput()
    while int(step) < total_steps and not bool(stopped_early):
        if progbar is None:
            epoch = int(step) // steps_per_epoch + 1
            progbar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "seq/s", "tok/s"],
                                          verbose=1 if sys.stdout.isatty() else 2)
            print(f"epoch {epoch}")
        batch = next(iterator)
        seed = rng.make_seeds(1)[:, 0]
        loss, grad_norm = train_step(model_keys(batch), seed)
        loss = float(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss} at step {int(step) + 1}; nothing was saved after it, the last good "
                f"checkpoint is {manager.latest_checkpoint or '(none yet)'}")
        step.assign_add(1)
        trained_steps += 1
        current = int(step)
        window.add(batch["lengths"].numpy())
        progbar.update((current - 1) % steps_per_epoch + 1,
                       values=[("loss", loss), ("seq/s", window.sequences_per_second()),
                               ("tok/s", window.tokens_per_second())])
        if current % tc.log_step_count_steps == 0:
            writers.train(loss, float(grad_norm), float(optimizer.learning_rate), window, step=current)
        if current % steps_per_epoch == 0:
            progbar = None
        evaluate_now = eval_ds is not None and (current % eval_every == 0 or current == total_steps)
        if evaluate_now:
            result = run_evaluation()
            history.append({"step": current, **result})
            value = result[tc.early_stopping_metric]
            delta = (value - float(best_value)) if better else (float(best_value) - value)
            if delta > tc.early_stopping_min_delta or not best_manager.latest_checkpoint:
                best_value.assign(value)
                evals_without_improvement.assign(0)
                best_manager.save(checkpoint_number=current)
            else:
                evals_without_improvement.assign_add(1)
            print(f"  eval step {current}: " + report.format_metrics(result) +
                  f" (best {tc.early_stopping_metric} {float(best_value):.4f})")
            if tc.early_stopping_patience and int(evals_without_improvement) >= tc.early_stopping_patience:
                stopped_early.assign(True)
                print(f"  early stop: no {tc.early_stopping_metric} improvement in "
                      f"{tc.early_stopping_patience} evaluations")
        if current % save_every == 0 or current == total_steps or bool(stopped_early):
            manager.save(checkpoint_number=current)
    elapsed = time.time() - started
    if eval_ds is None and not best_manager.latest_checkpoint:
        best_manager.save(checkpoint_number=int(step))
    if trained_steps and not manager.latest_checkpoint:
        manager.save(checkpoint_number=int(step))

    best_path = best_manager.latest_checkpoint
    if best_path:
        best_checkpoint.restore(best_path).expect_partial()
    final = {"best_checkpoint": best_path, "steps": int(step), "trained_steps_this_run": trained_steps,
             "train_seconds": elapsed, "sequences_per_second": window.overall_sequences_per_second(),
             "tokens_per_second": window.overall_tokens_per_second(), "history": history,
             "stopped_early": bool(stopped_early)}
    if eval_ds is not None:
        final["eval"], _ = evaluate(eval_step, eval_ds, mc, spec.labels)
    test_split = prepared.splits.get("test")
    if test_split and test_split.num_records:
        test_ds = make_dataset(test_split.files, spec, config.data, training=False, seed=tc.seed)
        final["test"], _ = evaluate(eval_step, test_ds, mc, spec.labels)
    final["export"] = _export(model, spec, config, eval_ds or train_ds)
    report.write_metrics(model_dir, final)
    report.print_final_table(final, model_dir)
    return final


def _export(model, spec, config: Config, sample_ds) -> Dict[str, object]:
    from export import export_model  # export/ sits downstream of the trainer

    return export_model(model, spec, config, sample_ds)
