"""What a step does: the compiled training loop body and the eval step. *When* is `trainer.train`'s job.

A batch is the flat dict `data.pipeline.make_dataset` yields; the steps see only its numeric
entries (`model_keys`), so XLA never meets the string `id` column.

`TrainLoop(num_steps)` runs `num_steps` optimizer steps (fewer once its `stop` flag is set)
inside one `tf.function`: it pulls the batches from the (checkpointable) iterators, draws each
micro-batch's dropout seed from the checkpointed `tf.random.Generator`, and keeps its running
numbers (loss sum, sequences, tokens, the first non-finite step) in variables that the loop reads
only when it logs. So a step costs no Python and no device-to-host copy, and a resumed run draws
exactly what it would have drawn.

One optimizer step = `grad_accum_steps` micro-batches on every replica. Gradients are of the
weighted loss *sums*; the sum of example weights is all-reduced over replicas and micro-batches,
so the update equals that of one batch `replicas x grad_accum_steps` times as large.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import keras
import tensorflow as tf

from models import loss_terms

NUMERIC_KEYS = ("features", "token_ids", "lengths", "label", "labels", "tags", "weight")
TIME_KEYS = ("features", "token_ids", "tags")
# Under XLA every new [batch, time] shape compiles anew: padding time up to a multiple of this
# bounds the shapes (the recurrence stops at the longest real length, so padding costs little).
XLA_TIME_MULTIPLE = 8
SUM = tf.distribute.ReduceOp.SUM


def model_keys(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The entries of a batch that the model and the loss read."""
    return {key: value for key, value in batch.items() if key in NUMERIC_KEYS}


def compiled_length(time_steps: tf.Tensor, multiple: int = XLA_TIME_MULTIPLE) -> tf.Tensor:
    """int32 scalar: the padded length XLA compiles a batch of `time_steps` steps for.

    A multiple of `multiple`, and of a quarter of the largest power of 2 <= time_steps, so the
    compiled shapes stay few whatever the data: about 4 per doubling of length (at most 25%
    padding added). Rounding to a multiple of 8 alone gave every batch of a long, widely spread
    bucket its own shape (DNA sequences of 4,000 to 18,921 tokens) and XLA recompiled nearly
    every step.
    """
    time_steps = tf.cast(time_steps, tf.int32)
    octave = tf.bitwise.left_shift(1, tf.cast(tf.math.floor(
        tf.math.log(tf.cast(tf.maximum(time_steps, 1), tf.float32)) / tf.math.log(2.0)), tf.int32))
    step = tf.maximum(tf.constant(multiple, tf.int32), octave // 4)
    return time_steps + (-time_steps) % step


def compiled_lengths(shortest: int, longest: int) -> Tuple[int, ...]:
    """Every time length XLA may compile for batches whose longest sequence lies in
    [shortest, longest] (sorted): the distinct `compiled_length`s of those lengths."""
    lengths = compiled_length(tf.range(max(1, shortest), max(1, shortest, longest) + 1))
    return tuple(sorted({int(v) for v in lengths.numpy()}))


def pad_time(batch: Dict[str, tf.Tensor], multiple: int) -> Dict[str, tf.Tensor]:
    """Zero-pads the time axis (axis 1) of the per-step entries up to `compiled_length`."""
    time_steps = tf.shape(next(batch[key] for key in TIME_KEYS if key in batch))[1]
    extra = compiled_length(time_steps, multiple) - time_steps
    padded = dict(batch)
    for key in TIME_KEYS:
        if key in batch:
            rank = batch[key].shape.rank
            padded[key] = tf.pad(batch[key], [[0, 0], [0, extra]] + [[0, 0]] * (rank - 2))
    return padded


def signature_of(element_spec: Dict[str, tf.TensorSpec]) -> Dict[str, tf.TensorSpec]:
    """Batch TensorSpecs with free batch and time dims, so bucketed batches never retrace."""
    return {
        key: tf.TensorSpec([None] * spec.shape.rank, spec.dtype, name=key)
        for key, spec in model_keys(element_spec).items()
    }


class LoopStats:
    """Running numbers the compiled loop writes and the Python loop reads at log time.

    loss_sum / loss_count: mean training loss since the last `reset` (float64 / int64 scalars);
    grad_norm: the last step's global gradient norm before clipping (float32 scalar);
    sequences, tokens, padded_tokens: global counts since the last `reset` (int64 scalars);
    nonfinite_step: the first step whose loss was NaN or Inf, -1 while none was (int64 scalar).
    Not checkpointed: a resumed run starts counting afresh.
    """

    def __init__(self):
        def var(dtype, value=0):
            return tf.Variable(tf.constant(value, dtype), trainable=False)

        self.loss_sum, self.loss_count = var(tf.float64), var(tf.int64)
        self.grad_norm = var(tf.float32)
        self.sequences, self.tokens, self.padded_tokens = var(tf.int64), var(tf.int64), var(tf.int64)
        self.nonfinite_step = var(tf.int64, -1)

    def read_and_reset(self) -> Dict[str, float]:
        """{"loss", "grad_norm", "sequences", "tokens", "padding_share"} since the last call."""
        count = int(self.loss_count.numpy())
        padded = int(self.padded_tokens.numpy())
        tokens = int(self.tokens.numpy())
        result = {"loss": float(self.loss_sum.numpy()) / max(count, 1), "steps": count,
                  "grad_norm": float(self.grad_norm.numpy()), "sequences": int(self.sequences.numpy()),
                  "tokens": tokens, "padding_share": 1.0 - tokens / max(padded, 1)}
        for variable in (self.loss_sum, self.loss_count, self.sequences, self.tokens, self.padded_tokens):
            variable.assign(tf.zeros_like(variable))
        return result


class TrainLoop:
    """`loop(num_steps)` trains `num_steps` optimizer steps in one compiled call.

    Args:
      model, optimizer: built under `strategy.scope()`; the optimizer may be a Keras
        `LossScaleOptimizer` (float16 mixed precision), whose scale the step applies.
      head: the model's head name (`models.loss_terms`).
      strategy: a `tf.distribute.Strategy` (the default one for a single device).
      iterators: one checkpointable iterator per local replica, each over its own data shard;
        or, with `batch_split` > 1, one iterator whose batches the local replicas split.
      rng: checkpointed `tf.random.Generator`; one int64 [2] seed per micro-batch.
      step: int64 variable, the global step, incremented once per optimizer step.
      clip_norm: global-norm clipping of the summed gradient (0 = off).
      label_smoothing, class_weights: passed to `loss_terms` (class_weights float32 [C] or None).
      element_spec: the training dataset's element spec (fixes the step's input signature).
      grad_accum_steps: micro-batches per optimizer step.
      jit_compile: compile the per-replica gradient computation with XLA.
      stop: a bool variable read before every step, or None; once it is True the chunk ends
        early (SIGTERM, `trainer.preemption`), after the step in flight.
      batch_split: local replicas that share each batch (CPU replicas,
        `trainer.distribution`): replica r takes examples r, r + n, r + 2n... of the batch, so
        both halves have the batch's length bucket and the replicas finish together.
    """

    def __init__(self, model, optimizer, head: str, *, strategy, iterators: Sequence, rng, step,
                 clip_norm: float, label_smoothing: float, class_weights, element_spec,
                 grad_accum_steps: int = 1, jit_compile: bool = False, stop=None,
                 batch_split: int = 1):
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self._split = batch_split
        self._stop = stop
        self.iterators, self.rng, self.step = list(iterators), rng, step
        self.stats = LoopStats()
        self._accum = grad_accum_steps
        self._clip_norm = clip_norm
        self._jit = jit_compile
        self._scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        variables = model.trainable_variables

        def gradients(batch, seed, loss_scale):
            """Gradient of this replica's weighted loss sum (times loss_scale) and the sums."""
            with tf.GradientTape() as tape:
                logits = tf.cast(model(batch, training=True, seed=seed), tf.float32)
                weighted_sum, total_weight = loss_terms(
                    head, logits, batch, label_smoothing=label_smoothing, class_weights=class_weights)
                objective = weighted_sum * loss_scale
            return tape.gradient(objective, variables), weighted_sum, total_weight

        self._gradients = tf.function(
            gradients, jit_compile=jit_compile, reduce_retracing=True,
            input_signature=[signature_of(element_spec), tf.TensorSpec([2], tf.int64),
                             tf.TensorSpec([], tf.float32)])
        self._loop = tf.function(self._run, input_signature=[tf.TensorSpec([], tf.int32)])

    def __call__(self, num_steps: int) -> None:
        self._loop(tf.constant(num_steps, tf.int32))

    def _next_batch(self):
        if self._split > 1:
            batch, split = model_keys(next(self.iterators[0])), self._split
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: {key: value[ctx.replica_id_in_sync_group::split]
                             for key, value in batch.items()})
        if len(self.iterators) == 1:
            return model_keys(next(self.iterators[0]))
        local = len(self.iterators)
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: model_keys(next(self.iterators[ctx.replica_id_in_sync_group % local])))

    def _run(self, num_steps):
        for _ in tf.range(num_steps):
            if self._stop is not None:  # decided when tracing: no read at all without a flag
                if self._stop.read_value():
                    break
            batches = [self._next_batch() for _ in range(self._accum)]
            seeds = [self.rng.make_seeds(1)[:, 0] for _ in range(self._accum)]
            outputs = self.strategy.run(self._replica_step, args=(batches, seeds))
            loss, grad_norm, sequences, tokens, padded = (
                self.strategy.experimental_local_results(value)[0] for value in outputs)
            self.step.assign_add(1)
            stats = self.stats
            stats.loss_sum.assign_add(tf.cast(loss, tf.float64))
            stats.loss_count.assign_add(1)
            stats.grad_norm.assign(grad_norm)
            stats.sequences.assign_add(sequences)
            stats.tokens.assign_add(tokens)
            stats.padded_tokens.assign_add(padded)
            first_bad = tf.logical_and(tf.logical_not(tf.math.is_finite(loss)), stats.nonfinite_step < 0)
            stats.nonfinite_step.assign(tf.where(first_bad, self.step, stats.nonfinite_step))
            if stats.nonfinite_step >= 0:
                break  # every later step would only spread the NaN

    def _replica_step(self, batches, seeds) -> Tuple[tf.Tensor, ...]:
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        scale = tf.cast(self.optimizer.dynamic_scale, tf.float32) if self._scaled else tf.constant(1.0)
        grads, loss_sum, weight_sum = None, 0.0, 0.0
        sequences, tokens, padded = tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(0, tf.int64)
        for batch, seed in zip(batches, seeds):
            seed = tf.random.experimental.stateless_fold_in(seed, replica, alg="philox")
            model_batch = pad_time(batch, XLA_TIME_MULTIPLE) if self._jit else batch
            micro_grads, weighted_sum, total_weight = self._gradients(model_batch, seed, scale)
            grads = micro_grads if grads is None else [a + b for a, b in zip(grads, micro_grads)]
            loss_sum += weighted_sum
            weight_sum += total_weight
            lengths = tf.cast(batch["lengths"], tf.int64)
            sequences += tf.size(lengths, tf.int64)
            tokens += tf.reduce_sum(lengths)
            padded += tf.size(lengths, tf.int64) * tf.reduce_max(lengths)
        # Sums over all replicas (one all-reduce per dtype), so that every replica normalises by
        # the global weight and clipping sees the whole global gradient.
        loss_sum, weight_sum = context.all_reduce(SUM, [loss_sum, weight_sum])
        sequences, tokens, padded = context.all_reduce(SUM, [sequences, tokens, padded])
        denominator = tf.maximum(weight_sum, 1e-12)
        grads = context.all_reduce(SUM, grads) if self.strategy.num_replicas_in_sync > 1 else grads
        grads = [g / denominator for g in grads]
        grad_norm = tf.linalg.global_norm(grads)  # of the scaled gradient
        if self._clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self._clip_norm * scale, use_norm=grad_norm)
        # apply_gradients sums over replicas again: hand each replica its share.
        replicas = float(self.strategy.num_replicas_in_sync)
        grads = [g / replicas for g in grads] if replicas > 1 else grads
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss_sum / denominator, grad_norm / scale, sequences, tokens, padded


def make_eval_step(model, head: str, *, element_spec) -> Callable:
    """Returns `eval_step(batch) -> (logits, weighted_loss_sum, total_weight)`; no dropout.

    logits float32 (see `models.heads`); the sums are float32 scalars. The eval loss uses
    example weights but no class weights: it measures the data as they are.
    """

    def step(batch) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        logits = tf.cast(model(batch, training=False), tf.float32)
        weighted_sum, total_weight = loss_terms(head, logits, batch)
        return logits, weighted_sum, total_weight

    return tf.function(step, input_signature=[signature_of(element_spec)])
