"""`train_and_evaluate(config)`: the loop that decides *when* to train, evaluate, save and stop.

Top to bottom: pick the distribution strategy, prepare the data (or reuse the model dir's),
build the model and optimizer, restore the newest readable checkpoint (model, optimizer, step,
RNG and early-stopping state; the data position follows from the step, see `_data_position`) or warm-start from another run, then train in
compiled chunks that end wherever something is due: a log line, an evaluation (every epoch or
`eval_every_steps`), a checkpoint, the end of an epoch. SIGTERM ends the chunk in flight, saves
a checkpoint there and raises `preemption.Preempted`; a lost peer of a multi-worker job raises
`distribution.PeerLost`. The best checkpoint is kept apart; at the
end its weights are evaluated once on the test split and exported. What a step does lives
in `trainer.steps`; the strategy and who writes what in `trainer.distribution`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from data.pipeline import make_dataset
from data.prepare import prepare_data
from models import EvalMetrics, build_model
from models.losses import class_weights_from_counts
from trainer import checkpoints, distribution, preemption, report, rules, summaries
from trainer.config import (AUTO_EPOCH_SEQUENCES, AUTO_MAX_EPOCHS, AUTO_MIN_EPOCHS, AUTO_MIN_PATIENCE,
                            AUTO_MIN_STEPS, AUTO_PATIENCE_FRACTION,
                            XLA_AUTO_MIN_TOKENS, Config)
from trainer.optimization import make_optimizer
from trainer.progress import Progress, describe_devices
from trainer.steps import TrainLoop, make_eval_step, model_keys

LOWER_IS_BETTER = ("loss", "ece", "expected_calibration_error")
# Evaluations (and so checkpoints) a default run makes at most: each costs a pass over the
# eval split and a checkpoint write, which on tiny sets cost more than the epoch itself.
MAX_AUTO_EVALS = 150


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
        reference_length=rules.median_length(spec),
    )
    return dataclasses.replace(config, model=model)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def evaluate(eval_step, dataset, model_config, label_names):
    """One pass over a finite dataset; returns (metrics dict with "loss" and "examples", EvalMetrics)."""
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


def training_steps(tc, num_train: int, steps_per_epoch: int) -> int:
    """Optimizer steps of the run: `max_steps`, else `num_epochs` epochs, else (both 0) the
    data-size rule: ceil(AUTO_EPOCH_SEQUENCES / N) epochs clipped to [AUTO_MIN_EPOCHS,
    AUTO_MAX_EPOCHS], and at least AUTO_MIN_STEPS steps (see TrainConfig.num_epochs)."""
    if tc.max_steps:
        return tc.max_steps
    if tc.num_epochs:
        return tc.num_epochs * steps_per_epoch
    epochs = min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_EPOCH_SEQUENCES / max(num_train, 1))))
    steps = max(epochs * steps_per_epoch, AUTO_MIN_STEPS)
    logging.info("num_epochs=0: %d steps (%.1f epochs) for %d training sequences (about %d "
                 "sequences in all, %d to %d epochs, at least %d steps)", steps,
                 steps / steps_per_epoch, num_train, AUTO_EPOCH_SEQUENCES, AUTO_MIN_EPOCHS,
                 AUTO_MAX_EPOCHS, AUTO_MIN_STEPS)
    return steps


def patience_for(tc, evaluations: int) -> int:
    """Evaluations without improvement before stopping: `early_stopping_patience`, or for -1
    (auto) ceil(AUTO_PATIENCE_FRACTION x the run's planned evaluations), at least
    AUTO_MIN_PATIENCE; 0 = never stop."""
    if tc.early_stopping_patience >= 0:
        return tc.early_stopping_patience
    patience = max(AUTO_MIN_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * evaluations))
    logging.info("early_stopping_patience=auto: stop after %d evaluations without a better hold-out "
                 "%s (%d planned; a fifth, at least %d)", patience, tc.early_stopping_metric,
                 evaluations, AUTO_MIN_PATIENCE)
    return patience


def eval_period(total_steps: int, steps_per_epoch: int) -> int:
    """Steps between evaluations when `eval_every_steps` is 0: every epoch, but whole epochs
    of at least total_steps / MAX_AUTO_EVALS steps, so a run over a tiny set (one step an
    epoch, 1,200 epochs) evaluates and checkpoints about MAX_AUTO_EVALS times, not 1,200."""
    epochs = max(1, math.ceil(total_steps / (MAX_AUTO_EVALS * steps_per_epoch)))
    return epochs * steps_per_epoch


def use_xla(setting: str, training_tokens: int) -> bool:
    """Resolves `jit_compile` ("on", "off", "auto") for a run that reads this many real steps."""
    if setting != "auto":
        return setting == "on"
    chosen = training_tokens >= XLA_AUTO_MIN_TOKENS
    logging.info("jit_compile=auto: XLA %s for about %d training tokens (on from %d)",
                 "on" if chosen else "off", training_tokens, XLA_AUTO_MIN_TOKENS)
    return chosen


def _data_position(train_datasets, batches_drawn: int):
    """Iterators over the training datasets, each `batches_drawn` batches in.

    The data position is not in the checkpoint: every step draws `grad_accum_steps` batches
    from each iterator and the pipeline's order is a function of the seed alone, so the step
    says where the data stood. A resumed run rebuilds the pipeline and skips that many
    batches, and checkpoints hold model, optimizer, RNG and counters only, whatever the size
    of the data (an iterator's checkpoint carried the cached split and the shuffle buffer:
    213 MB a checkpoint for an 82k-parameter model on 4,096 sequences).
    """
    if not batches_drawn:
        return [iter(ds) for ds in train_datasets]
    started = time.time()
    iterators = [iter(ds.skip(batches_drawn - 1)) for ds in train_datasets]
    for iterator in iterators:  # the last skipped batch, drawn here: the skip is paid (and timed) now
        next(iterator)
    logging.info("data position restored: %d batches skipped in %.1f s", batches_drawn, time.time() - started)
    return iterators


def _next_stop(current: int, total: int, periods) -> int:
    """The first step after `current` at which something is due (a multiple of a period, or the end)."""
    return min([total] + [(current // p + 1) * p for p in periods if p > 0])


def train_and_evaluate(config: Config) -> Dict[str, object]:
    """Trains, evaluates and exports as `config` says; returns the final report dict."""
    config = resolve_dirs(config)
    tc = config.train
    # First of all: a multi-worker strategy sets up collective ops, which must precede other TF work.
    strategy, worker = distribution.make_strategy(tc.collective_timeout_secs)
    model_dir, work_dir = tc.model_dir, worker.work_dir(tc.model_dir)
    tf.io.gfile.makedirs(work_dir)
    if tc.op_determinism:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(tc.seed)
    return _train_and_evaluate(config, strategy, worker, model_dir, work_dir)


def _train_and_evaluate(config: Config, strategy, worker, model_dir: str, work_dir: str):
    tc = config.train
    prepared = prepare_data(config.data, work_dir, tc.seed)  # each worker prepares its own copy
    spec = prepared.spec
    config, decisions = rules.resolve(with_data_spec(config, spec), spec)
    for decision in decisions:
        logging.info("auto: %s", decision)
    config.save(work_dir)
    mc = config.model

    replicas = strategy.num_replicas_in_sync
    local_replicas = max(1, replicas // worker.num_workers)
    num_train = prepared.splits["train"].num_records
    global_batch = config.data.batch_size * replicas * tc.grad_accum_steps
    steps_per_epoch = max(1, math.ceil(num_train / global_batch))
    total_steps = training_steps(tc, num_train, steps_per_epoch)
    eval_every = tc.eval_every_steps or eval_period(total_steps, steps_per_epoch)
    save_every = tc.save_checkpoints_steps or eval_every

    with strategy.scope():
        model = build_model(mc, tc.mixed_precision or "float32")
        optimizer = make_optimizer(tc, total_steps)
        if tc.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)

    train_files = prepared.splits["train"].files
    train_datasets = [
        make_dataset(train_files, spec, config.data, training=True, seed=tc.seed,
                     num_shards=worker.num_workers * local_replicas,
                     shard_index=worker.task_index * local_replicas + i)
        for i in range(local_replicas)]
    eval_split = prepared.splits.get("eval")
    # Evaluations batch by length (one pass, order free: the metrics are sums over examples).
    eval_ds = (make_dataset(eval_split.files, spec, config.data, training=False, seed=tc.seed,
                            by_length=True)
               if eval_split and eval_split.num_records else None)
    rng = tf.random.Generator.from_seed(tc.seed)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    better = higher_is_better(tc.early_stopping_metric)
    best_value = tf.Variable(-np.inf if better else np.inf, dtype=tf.float64, name="best_value")
    best_step = tf.Variable(-1, dtype=tf.int64, name="best_step")
    evals_without_improvement = tf.Variable(0, dtype=tf.int64, name="evals_without_improvement")
    stopped_early = tf.Variable(False, name="stopped_early")
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step, rng=rng,
        best_value=best_value, best_step=best_step,
        evals_without_improvement=evals_without_improvement, stopped_early=stopped_early)
    manager = checkpoints.open_manager(checkpoint, worker.checkpoint_dir(model_dir),
                                       max_to_keep=tc.keep_checkpoint_max, step_counter=step)
    best_checkpoint = tf.train.Checkpoint(model=model)  # its file name carries the step
    best_manager = checkpoints.open_manager(
        best_checkpoint, tf.io.gfile.join(work_dir, "best"), max_to_keep=1, step_counter=step)
    if worker.num_workers > 1:
        restored = checkpoints.restore_agreed(
            checkpoint, manager, lambda value: distribution.min_over_workers(strategy, value))
    else:
        restored = checkpoints.restore_newest_readable(checkpoint, manager)
    iterators = _data_position(train_datasets, int(step) * tc.grad_accum_steps)
    if restored:
        logging.info("resumed from %s at step %d", restored, int(step))
    else:
        _adapt(model, train_files, spec, config)
    if not restored and tc.warm_start_from:
        checkpoints.warm_start(model, tc.warm_start_from, tc.warm_start_vars, mc)

    # Multi-worker: the workers must stop at one step, so only between chunks (see StopSignal).
    stop_signal = preemption.StopSignal(in_loop=worker.num_workers == 1)
    class_weights = (None if mc.class_weighting == "none" else tf.constant(class_weights_from_counts(
        mc.class_counts, mc.class_weighting, head=mc.resolved_head, num_examples=mc.num_train_examples),
        tf.float32))
    train_loop = TrainLoop(
        model, optimizer, mc.resolved_head, strategy=strategy, iterators=iterators, rng=rng, step=step,
        clip_norm=tc.clip_norm, label_smoothing=mc.resolved_label_smoothing, class_weights=class_weights,
        element_spec=train_datasets[0].element_spec, grad_accum_steps=tc.grad_accum_steps,
        jit_compile=use_xla(tc.jit_compile, total_steps * global_batch * rules.median_length(spec)),
        stop=stop_signal.variable)
    eval_step = make_eval_step(model, mc.resolved_head, element_spec=train_datasets[0].element_spec)
    writers = summaries.Writers(model_dir, enabled=worker.is_chief)
    writers.hparams(config)
    writers.skipped_records(prepared, step=int(step))
    tuning = summaries.TuningReporter(tc.early_stopping_metric, enabled=worker.is_chief)

    def save(checkpoint_number: int) -> None:
        manager.save(checkpoint_number=checkpoint_number)
        save.last, save.step = time.time(), checkpoint_number
    save.last, save.step = time.time(), None

    history = []
    trained_steps = 0
    window = summaries.Throughput()
    if worker.is_chief:
        print(f"training {num_train} sequences on {describe_devices(strategy, worker.num_workers)}, "
              f"{steps_per_epoch} steps/epoch of {global_batch} ({replicas} replicas x "
              f"{tc.grad_accum_steps} micro-batches), up to {total_steps} steps; model dir {model_dir}")
    # One display for the whole run (trainer/progress.py): in place on a terminal, a line per
    # tenth of the run (or 30 s) in a log.
    evaluations = math.ceil(total_steps / eval_every) if eval_ds is not None else 0
    patience = patience_for(tc, evaluations) if eval_ds is not None else 0
    display = Progress(total_steps, start_step=int(step), enabled=worker.is_chief, evaluations=evaluations)
    loop_started = time.time()
    periods = (tc.log_step_count_steps, eval_every if eval_ds is not None else 0, save_every, steps_per_epoch)
    def progress():  # for a lost peer's message: where this worker got to, where to resume
        return int(step), manager.latest_checkpoint or restored

    # SIGTERM: save at the end of the chunk in flight and exit; a lost peer: one clear error.
    with stop_signal, distribution.watch_peers(worker, progress), display:
        while int(step) < total_steps and not bool(stopped_early):
            current = int(step)
            started = time.perf_counter()
            train_loop(_next_stop(current, total_steps, periods) - current)
            stats = train_loop.stats.read_and_reset()  # the one host sync of the chunk
            window.add(stats["sequences"], stats["tokens"], time.perf_counter() - started,
                       stats["padding_share"])
            bad_step = int(train_loop.stats.nonfinite_step.numpy())
            if bad_step >= 0:  # checked before any save, so a NaN is never checkpointed
                raise FloatingPointError(
                    f"loss became NaN or Inf at step {bad_step}; nothing was saved after it, the last good "
                    f"checkpoint is {manager.latest_checkpoint or '(none yet)'}")
            trained_steps += int(step) - current
            current = int(step)
            display.update(current, stats["loss"], window.sequences_per_second(), window.tokens_per_second())
            if current % tc.log_step_count_steps == 0 or current == total_steps:
                if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                    stats["loss_scale"] = float(optimizer.dynamic_scale)
                    # Steps whose scaled gradients overflowed were skipped: they never reached the
                    # inner optimizer.
                    stats["overflow_skipped_steps"] = current - int(optimizer.inner_optimizer.iterations)
                writers.train(stats, float(optimizer.learning_rate), window, step=current)
            if eval_ds is not None and (current % eval_every == 0 or current == total_steps):
                result, metrics = evaluate(eval_step, eval_ds, mc, spec.labels)
                writers.evaluation(result, metrics.confusion_matrix(), spec.labels, step=current)
                tuning.report(result, current)
                history.append({"step": current, **result})
                value = result[tc.early_stopping_metric]
                delta = (value - float(best_value)) if better else (float(best_value) - value)
                improved = delta > tc.early_stopping_min_delta or int(best_step) < 0
                if improved:
                    best_value.assign(value)
                    best_step.assign(current)
                    evals_without_improvement.assign(0)
                    if worker.is_chief:
                        best_manager.save(checkpoint_number=current)
                else:
                    evals_without_improvement.assign_add(1)
                metric = tc.early_stopping_metric
                display.evaluation(
                    f"  eval step {current}: " + report.format_metrics(result) + f" (best {metric} "
                    f"{float(best_value):.4f} at step {int(best_step)})",
                    summary=f"eval {metric} {value:.4f}, best {float(best_value):.4f} @ {int(best_step)}",
                    improved=improved)
                if patience and int(evals_without_improvement) >= patience:
                    stopped_early.assign(True)
                    display.note(f"  early stop at step {current} of {total_steps}: no {metric} "
                                 f"improvement in {patience} evaluations (best at step {int(best_step)})")
            secs_due = tc.save_checkpoints_secs > 0 and distribution.agree(
                strategy, time.time() - save.last >= tc.save_checkpoints_secs)
            if current % save_every == 0 or current == total_steps or bool(stopped_early) or secs_due:
                save(current)
            if distribution.agree(strategy, stop_signal.requested):
                writers.flush()
                raise _preempted(save, manager, restored, current, trained_steps)
    writers.flush()
    if trained_steps and not manager.latest_checkpoint:
        save(int(step))
    window.train_seconds = time.time() - loop_started
    if not worker.is_chief:
        with distribution.watch_peers(worker, progress):
            distribution.finish_together(worker)  # until the chief has evaluated and exported
        return {"steps": int(step), "trained_steps_this_run": trained_steps}
    try:
        return _finish(config, model, eval_step, eval_ds, prepared, best_manager, best_checkpoint,
                       best_value, best_step, stopped_early, step, trained_steps, window, history,
                       train_datasets[0])
    finally:  # an export that fails still releases the workers (the chief reports the error)
        with distribution.watch_peers(worker, progress):
            distribution.finish_together(worker)


def _preempted(save, manager, restored: Optional[str], current: int, trained_steps: int) -> preemption.Preempted:
    """After SIGTERM: saves step `current` unless it is saved already, logs one line, returns the
    exception that ends the run (exit code 143 from the command line)."""
    if trained_steps and save.step != current:
        save(current)
    path = manager.latest_checkpoint if trained_steps else restored
    stopped = preemption.Preempted(current, path)
    logging.warning("%s", stopped)
    return stopped


def _finish(config, model, eval_step, eval_ds, prepared, best_manager, best_checkpoint, best_value,
            best_step, stopped_early, step, trained_steps, window, history, sample_ds):
    """Chief only: restores the best weights, evaluates them, exports, writes metrics.json."""
    tc, mc, spec = config.train, config.model, prepared.spec
    if eval_ds is None and not best_manager.latest_checkpoint:
        best_manager.save(checkpoint_number=int(step))  # no eval: the last weights are the best known
    best_path = best_manager.latest_checkpoint
    if best_path:
        best_checkpoint.restore(best_path).expect_partial()
    final = {"best_checkpoint": best_path, "steps": int(step), "trained_steps_this_run": trained_steps,
             "train_seconds": window.train_seconds, "sequences_per_second": window.overall_sequences_per_second(),
             "tokens_per_second": window.overall_tokens_per_second(), "history": history,
             "stopped_early": bool(stopped_early)}
    if int(best_step) >= 0:
        final["best"] = {"metric": tc.early_stopping_metric, "value": float(best_value), "step": int(best_step)}
    if eval_ds is not None:
        final["eval"], metrics = evaluate(eval_step, eval_ds, mc, spec.labels)
        final["predictions"] = report.prediction_details("eval", metrics)
    test_split = prepared.splits.get("test")
    if test_split and test_split.num_records:
        test_ds = make_dataset(test_split.files, spec, config.data, training=False, seed=tc.seed,
                               by_length=True)
        final["test"], metrics = evaluate(eval_step, test_ds, mc, spec.labels)
        final["predictions"] = report.prediction_details("test", metrics)
    # Export checks read held-out batches in file order (a first batch of mixed lengths).
    held_out = (make_dataset(prepared.splits["eval"].files, spec, config.data, training=False,
                             seed=tc.seed) if eval_ds is not None else sample_ds)
    final["export"] = _export(model, spec, config, held_out)
    report.write_metrics(tc.model_dir, final)
    summaries.write_final_metrics(tc.model_dir, final)
    from export.run_report import try_write_report  # export/ sits downstream of the trainer

    final["report"] = try_write_report(tc.model_dir, final["export"])  # report.html
    report.print_final_table(final, tc.model_dir)
    return final


# Training sequences the data-fitted (not trained) parts of a model are fitted on.
ADAPT_SAMPLE_SEQUENCES = 512


def _adapt(model, train_files, spec, config: Config) -> None:
    """Fits the model's data-fitted parts (random-feature biases) on the first
    `ADAPT_SAMPLE_SEQUENCES` training sequences in file order: the same sample on every worker
    and every run with the same data, so a fresh start is reproducible."""
    if getattr(model, "random_features", None) is None:
        return
    started = time.perf_counter()
    sample = make_dataset(train_files, spec, config.data, training=False, seed=config.train.seed)
    batches = list(sample.take(math.ceil(ADAPT_SAMPLE_SEQUENCES / config.data.batch_size)))
    model.adapt(batches)
    logging.info("random-convolution features: %d, biases fitted on %d training sequences in %.1f s",
                 model.random_features.output_size, sum(int(b["lengths"].shape[0]) for b in batches),
                 time.perf_counter() - started)


def _export(model, spec, config: Config, sample_ds) -> Dict[str, object]:
    from export import export_model  # export/ sits downstream of the trainer

    if config.train.mixed_precision:
        # Serving and TFLite get float32 graphs: a float32 twin with the trained (float32) weights.
        twin = build_model(config.model, "float32")
        twin.set_weights(model.get_weights())
        model = twin
    return export_model(model, spec, config, sample_ds)
