"""What one step does: compiled train and eval steps. When steps run is `trainer.train`'s job.

A batch is the flat dict `data.pipeline.make_dataset` yields; the steps see only its numeric
entries (`model_keys`), so XLA never meets the string `id` column.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import tensorflow as tf

from models import loss_terms

NUMERIC_KEYS = ("features", "token_ids", "lengths", "label", "labels", "tags", "weight")


def model_keys(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The entries of a batch that the model and the loss read."""
    return {key: value for key, value in batch.items() if key in NUMERIC_KEYS}


def signature_of(element_spec: Dict[str, tf.TensorSpec]) -> Dict[str, tf.TensorSpec]:
    """Batch TensorSpecs with free batch and time dims, so bucketed batches never retrace."""
    return {
        key: tf.TensorSpec([None] * spec.shape.rank, spec.dtype, name=key)
        for key, spec in model_keys(element_spec).items()
    }


def make_train_step(model, optimizer, head: str, *, clip_norm: float, label_smoothing: float,
                    class_weights, element_spec, jit_compile: bool) -> Callable:
    """Returns `train_step(batch, seed) -> (loss, grad_norm)`, both float32 scalars.

    `seed` is an int64 [2] stateless seed from the trainer's checkpointed generator: it picks
    this batch's dropout masks, so a resumed run draws exactly the masks it would have drawn.
    """
    variables = model.trainable_variables

    def step(batch, seed):
        with tf.GradientTape() as tape:
            logits = model(batch, training=True, seed=seed)
            weighted_sum, total_weight = loss_terms(
                head, logits, batch, label_smoothing=label_smoothing, class_weights=class_weights)
            loss = weighted_sum / tf.maximum(total_weight, 1e-12)
        grads = tape.gradient(loss, variables)
        grad_norm = tf.linalg.global_norm(grads)
        if clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=grad_norm)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, grad_norm

    return tf.function(
        step,
        input_signature=[signature_of(element_spec), tf.TensorSpec([2], tf.int64, name="seed")],
        jit_compile=jit_compile,
    )


def make_eval_step(model, head: str, *, element_spec) -> Callable:
    """Returns `eval_step(batch) -> (logits, weighted_loss_sum, total_weight)`; no dropout.

    The eval loss uses example weights but no class weights: it measures the data as they are.
    """

    def step(batch) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        logits = model(batch, training=False)
        weighted_sum, total_weight = loss_terms(head, logits, batch)
        return logits, weighted_sum, total_weight

    return tf.function(step, input_signature=[signature_of(element_spec)])
