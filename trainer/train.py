"""`train_and_evaluate(config)`: the loop that decides *when* to train, evaluate, save and stop.

Top to bottom: `_set_up` picks up the strategy's worker, prepares the data (or reuses the model
dir's), builds the model and optimizer and restores the newest readable checkpoint (model,
optimizer, RNG and the `actions.RunState` counters; the data position follows from the step,
see `_data_position`) or warm-starts from another run; `_train` trains in compiled chunks that
end wherever something is due: a log line, an evaluation (every epoch or `eval_every_steps`), a
checkpoint, the end of an epoch; `_finish` (the chief) evaluates the best weights once on the
test split and exports them. What happens at those moments lives in `trainer.actions` (best
keeping, early stopping, saves, the NaN check), how long the run is and how often in
`trainer.schedule`, what a step does in `trainer.steps`, the strategy and who writes what in
`trainer.distribution`. SIGTERM ends the chunk in flight, saves a checkpoint there and raises
`preemption.Preempted`; a lost peer of a multi-worker job raises `distribution.PeerLost`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import time
from typing import Dict, Optional

import keras
import tensorflow as tf

from data.pipeline import make_dataset
from data.prepare import prepare_data
from models import build_model
from models.losses import class_weights_from_counts
from trainer import actions, checkpoints, distribution, environment, preemption, report, rules, schedule, summaries
from trainer.config import Config, higher_is_better
from trainer.optimization import make_optimizer
from trainer.progress import Progress, describe_devices
from trainer.steps import TrainLoop, compiled_lengths, make_eval_step


def resolve_dirs(config: Config) -> Config:
    """Fills model and export dirs from flags, Vertex AI's AIP_* variables or a fresh default."""
    train = config.train
    model_dir = train.model_dir or environment.checkpoint_dir()
    if not model_dir:
        model_dir = "runs/" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    export_dir = train.export_dir or environment.model_dir() or tf.io.gfile.join(model_dir, "export")
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


def train_and_evaluate(config: Config) -> Dict[str, object]:
    """Trains, evaluates and exports as `config` says; returns the final report dict."""
    config = resolve_dirs(config)
    tc = config.train
    # First of all: a multi-worker strategy sets up collective ops, which must precede other TF work.
    strategy, worker = distribution.make_strategy(tc.collective_timeout_secs, tc.cpu_replicas,
                                                  config.data.batch_size)
    model_dir, work_dir = tc.model_dir, worker.work_dir(tc.model_dir)
    tf.io.gfile.makedirs(work_dir)
    if tc.op_determinism:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(tc.seed)
    run = _set_up(config, strategy, worker, model_dir, work_dir)
    outcome = _train(run)
    if not worker.is_chief:
        with distribution.watch_peers(worker, run.progress):
            distribution.finish_together(worker)  # until the chief has evaluated and exported
        return {"steps": int(run.state.step), "trained_steps_this_run": outcome.trained_steps}
    try:
        return _finish(run, outcome)
    finally:  # an export that fails still releases the workers (the chief reports the error)
        with distribution.watch_peers(worker, run.progress):
            distribution.finish_together(worker)


@dataclasses.dataclass
class _Run:
    """What the parts of one run share, built once by `_set_up`."""

    config: Config  # resolved: data-derived fields and auto rules filled in
    prepared: object  # data.prepare.PreparedData
    strategy: tf.distribute.Strategy
    worker: object  # distribution.WorkerInfo
    model_dir: str
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    train_datasets: list  # one per local replica
    iterators: list  # over train_datasets, at the restored data position
    rng: tf.random.Generator  # dropout masks; checkpointed
    eval_ds: Optional[tf.data.Dataset]  # the hold-out, batched by length; None without one
    eval_step: object  # trainer.steps.make_eval_step: batch -> (logits, weighted loss sum, weight)
    state: actions.RunState
    saver: actions.Saver
    best: actions.BestKeeper
    restored: Optional[str]  # the checkpoint this run resumed from
    total_steps: int
    steps_per_epoch: int
    global_batch: int
    eval_every: int

    @property
    def spec(self):
        return self.prepared.spec

    def progress(self):
        """For a lost peer's message: where this worker got to, and where to resume."""
        return int(self.state.step), self.saver.latest or self.restored


@dataclasses.dataclass
class _Outcome:
    """What the training loop hands to `_finish`."""

    trained_steps: int  # optimizer steps taken by this process (not before a resume)
    window: summaries.Throughput
    history: list  # one dict per evaluation: {"step", metrics...}


def _set_up(config: Config, strategy, worker, model_dir: str, work_dir: str) -> _Run:
    """Prepares the data, resolves the auto rules, builds model, optimizer and pipelines and
    restores the newest readable checkpoint (or adapts and warm-starts a fresh model)."""
    tc = config.train
    prepared = prepare_data(config.data, work_dir, tc.seed)  # each worker prepares its own copy
    spec = prepared.spec
    config, decisions = rules.resolve(with_data_spec(config, spec), spec)
    for decision in decisions:
        logging.info("auto: %s", decision)
    config.save(work_dir)
    tc, mc = config.train, config.model

    replicas = strategy.num_replicas_in_sync
    # One pipeline per local replica, each over its own shard; CPU replicas share one pipeline
    # and split each of its batches (`TrainLoop`'s batch_split).
    pipelines = 1 if worker.cpu_replicas > 1 else max(1, replicas // worker.num_workers)
    num_train = prepared.splits["train"].num_records
    global_batch = config.data.batch_size * pipelines * worker.num_workers * tc.grad_accum_steps
    steps_per_epoch = max(1, math.ceil(num_train / global_batch))
    total_steps = schedule.training_steps(tc, num_train, steps_per_epoch)
    eval_every = tc.eval_every_steps or schedule.eval_period(total_steps, steps_per_epoch)

    with strategy.scope():
        model = build_model(mc, tc.mixed_precision or "float32")
        optimizer = make_optimizer(tc, total_steps)
        if tc.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)

    train_files = prepared.splits["train"].files
    train_datasets = [
        make_dataset(train_files, spec, config.data, training=True, seed=tc.seed,
                     num_shards=worker.num_workers * pipelines,
                     shard_index=worker.task_index * pipelines + i)
        for i in range(pipelines)]
    eval_split = prepared.splits.get("eval")
    # Evaluations batch by length (one pass, order free: the metrics are sums over examples).
    eval_ds = (make_dataset(eval_split.files, spec, config.data, training=False, seed=tc.seed,
                            by_length=True)
               if eval_split and eval_split.num_records else None)
    rng = tf.random.Generator.from_seed(tc.seed)
    better = higher_is_better(tc.early_stopping_metric)
    state = actions.RunState.create(better)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, rng=rng, **state.checkpoint_items())
    manager = checkpoints.open_manager(checkpoint, worker.checkpoint_dir(model_dir),
                                       max_to_keep=tc.keep_checkpoint_max, step_counter=state.step)
    best = actions.BestKeeper(state, model, tf.io.gfile.join(work_dir, "best"), tc.early_stopping_metric,
                              better, tc.early_stopping_min_delta,
                              enabled=worker.is_chief)
    if worker.num_workers > 1:
        restored = checkpoints.restore_agreed(
            checkpoint, manager, lambda value: distribution.min_over_workers(strategy, value))
    else:
        restored = checkpoints.restore_newest_readable(checkpoint, manager)
    iterators = _data_position(train_datasets, int(state.step) * tc.grad_accum_steps)
    if restored:
        logging.info("resumed from %s at step %d", restored, int(state.step))
    else:
        _adapt(model, train_files, spec, config)
    if not restored and tc.warm_start_from:
        checkpoints.warm_start(model, tc.warm_start_from, tc.warm_start_vars, mc)
    eval_step = make_eval_step(model, mc.resolved_head, element_spec=train_datasets[0].element_spec)
    saver = actions.Saver(manager, tc.save_checkpoints_steps or eval_every, tc.save_checkpoints_secs, strategy)
    return _Run(config=config, prepared=prepared, strategy=strategy, worker=worker, model_dir=model_dir,
                model=model, optimizer=optimizer, train_datasets=train_datasets, iterators=iterators,
                rng=rng, eval_ds=eval_ds, eval_step=eval_step,
                state=state, saver=saver, best=best, restored=restored, total_steps=total_steps,
                steps_per_epoch=steps_per_epoch, global_batch=global_batch, eval_every=eval_every)


def _train(run: _Run) -> _Outcome:
    """The loop: compiled chunks of steps, each ending where a log line, an evaluation or a
    save is due; raises `preemption.Preempted` after SIGTERM (with a checkpoint there)."""
    config, state, worker, strategy = run.config, run.state, run.worker, run.strategy
    tc, mc, spec = config.train, config.model, run.spec
    step, total_steps = state.step, run.total_steps
    # Multi-worker: the workers must stop at one step, so only between chunks (see StopSignal).
    stop_signal = preemption.StopSignal(in_loop=worker.num_workers == 1)
    class_weights = (None if mc.class_weighting == "none" else tf.constant(class_weights_from_counts(
        mc.class_counts, mc.class_weighting, head=mc.resolved_head, num_examples=mc.num_train_examples),
        tf.float32))
    lengths = (compiled_lengths(spec.length_quantiles[0], spec.length_quantiles[-1])
               if spec.length_quantiles else ())
    jit = schedule.use_xla(tc.jit_compile, total_steps * run.global_batch * rules.median_length(spec),
                           len(lengths) or schedule.XLA_AUTO_REFERENCE_SHAPES)
    if jit and lengths:
        logging.info("XLA compiles the training step once per padded time length: at most %d for "
                     "training lengths %d to %d (%s)", len(lengths), spec.length_quantiles[0],
                     spec.length_quantiles[-1], ", ".join(map(str, lengths)))
    train_loop = TrainLoop(
        run.model, run.optimizer, mc.resolved_head, strategy=strategy,
        iterators=run.iterators, rng=run.rng, step=step, clip_norm=tc.clip_norm,
        label_smoothing=mc.resolved_label_smoothing, class_weights=class_weights,
        element_spec=run.train_datasets[0].element_spec, grad_accum_steps=tc.grad_accum_steps,
        jit_compile=jit, stop=stop_signal.variable, batch_split=worker.cpu_replicas)
    writers = summaries.Writers(run.model_dir, enabled=worker.is_chief)
    writers.hparams(config)
    writers.skipped_records(run.prepared, step=int(step))
    tuning = summaries.TuningReporter(tc.early_stopping_metric, enabled=worker.is_chief)
    if worker.is_chief:
        print(f"training {run.prepared.splits['train'].num_records} sequences on "
              f"{describe_devices(strategy, worker.num_workers)}, {run.steps_per_epoch} steps/epoch of "
              f"{run.global_batch} ({strategy.num_replicas_in_sync} replicas x {tc.grad_accum_steps} "
              f"micro-batches), up to {total_steps} steps; model dir {run.model_dir}")
    evaluating = run.eval_ds is not None
    evaluations = math.ceil(total_steps / run.eval_every) if evaluating else 0
    early_stopping = actions.EarlyStopping(state, schedule.patience_for(tc, evaluations) if evaluating else 0)
    # One display for the whole run (trainer/progress.py): in place on a terminal, a line per
    # tenth of the run (or 30 s) in a log.
    display = Progress(total_steps, start_step=int(step), enabled=worker.is_chief, evaluations=evaluations)
    outcome = _Outcome(trained_steps=0, window=summaries.Throughput(), history=[])
    loop_started = time.time()
    periods = (tc.log_step_count_steps, run.eval_every if evaluating else 0, run.saver.every_steps,
               run.steps_per_epoch)

    def on_evaluation(current: int) -> None:
        result, metrics = actions.evaluate(run.eval_step, run.eval_ds, mc, spec.labels)
        writers.evaluation(result, metrics.confusion_matrix(), spec.labels, step=current)
        tuning.report(result, current)
        outcome.history.append({"step": current, **result})
        improved = run.best(result, current)
        metric, best_value, best_step = tc.early_stopping_metric, float(state.best_value), int(state.best_step)
        display.evaluation(
            f"  eval step {current}: " + report.format_metrics(result) + f" (best {metric} "
            f"{best_value:.4f} at step {best_step})",
            summary=f"eval {metric} {result[metric]:.4f}, best {best_value:.4f} @ {best_step}",
            improved=improved)
        if early_stopping():
            display.note(f"  early stop at step {current} of {total_steps}: no {metric} improvement "
                         f"in {early_stopping.patience} evaluations (best at step {best_step})")

    # SIGTERM: save at the end of the chunk in flight and exit; a lost peer: one clear error.
    with stop_signal, distribution.watch_peers(worker, run.progress), display:
        while int(step) < total_steps and not bool(state.stopped_early):
            current = int(step)
            started = time.perf_counter()
            train_loop(schedule.next_stop(current, total_steps, periods) - current)
            stats = train_loop.stats.read_and_reset()  # the one host sync of the chunk
            outcome.window.add(stats["sequences"], stats["tokens"], time.perf_counter() - started,
                               stats["padding_share"])
            actions.check_finite(train_loop.stats, run.saver.latest)
            outcome.trained_steps += int(step) - current
            current = int(step)
            display.update(current, stats["loss"], outcome.window.sequences_per_second(),
                           outcome.window.tokens_per_second())
            if current % tc.log_step_count_steps == 0 or current == total_steps:
                writers.train(_with_loss_scale(stats, run.optimizer, current),
                              float(run.optimizer.learning_rate), outcome.window, step=current)
            if evaluating and (current % run.eval_every == 0 or current == total_steps):
                on_evaluation(current)
            run.saver.save_if_due(current, final=current == total_steps or bool(state.stopped_early))
            if distribution.agree(strategy, stop_signal.requested):
                writers.flush()
                raise _preempted(run, current, outcome.trained_steps)
    writers.flush()
    if outcome.trained_steps and not run.saver.latest:
        run.saver.save(int(step))
    outcome.window.train_seconds = time.time() - loop_started
    return outcome


def _with_loss_scale(stats: Dict[str, float], optimizer, current: int) -> Dict[str, float]:
    """The chunk's stats, plus the loss scale and overflow-skipped steps under mixed_float16."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        stats["loss_scale"] = float(optimizer.dynamic_scale)
        # Steps whose scaled gradients overflowed were skipped: they never reached the inner optimizer.
        stats["overflow_skipped_steps"] = current - int(optimizer.inner_optimizer.iterations)
    return stats


def _preempted(run: _Run, current: int, trained_steps: int) -> preemption.Preempted:
    """After SIGTERM: saves step `current` unless it is saved already, logs one line, returns the
    exception that ends the run (exit code 143 from the command line)."""
    if trained_steps and run.saver.last_step != current:
        run.saver.save(current)
    path = run.saver.latest if trained_steps else run.restored
    stopped = preemption.Preempted(current, path)
    logging.warning("%s", stopped)
    return stopped


def _finish(run: _Run, outcome: _Outcome) -> Dict[str, object]:
    """Chief only: restores the best weights, evaluates them, exports, writes metrics.json."""
    config, state, spec, prepared = run.config, run.state, run.spec, run.prepared
    tc, mc = config.train, config.model
    best_path = run.best.restore_best(evaluated=run.eval_ds is not None)
    final = {"best_checkpoint": best_path, "steps": int(state.step),
             "trained_steps_this_run": outcome.trained_steps, "train_seconds": outcome.window.train_seconds,
             "sequences_per_second": outcome.window.overall_sequences_per_second(),
             "tokens_per_second": outcome.window.overall_tokens_per_second(), "history": outcome.history,
             "stopped_early": bool(state.stopped_early)}
    if int(state.best_step) >= 0:
        final["best"] = {"metric": tc.early_stopping_metric, "value": float(state.best_value),
                         "step": int(state.best_step)}
    if run.eval_ds is not None:
        final["eval"], metrics = actions.evaluate(run.eval_step, run.eval_ds, mc, spec.labels)
        final["predictions"] = report.prediction_details("eval", metrics)
    test_split = prepared.splits.get("test")
    if test_split and test_split.num_records:
        test_ds = make_dataset(test_split.files, spec, config.data, training=False, seed=tc.seed,
                               by_length=True)
        final["test"], metrics = actions.evaluate(run.eval_step, test_ds, mc, spec.labels)
        final["predictions"] = report.prediction_details("test", metrics)
    # Export checks read held-out batches in file order (a first batch of mixed lengths).
    held_out = (make_dataset(prepared.splits["eval"].files, spec, config.data, training=False,
                             seed=tc.seed) if run.eval_ds is not None else run.train_datasets[0])
    final["export"] = _export(run.model, spec, config, held_out)
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
