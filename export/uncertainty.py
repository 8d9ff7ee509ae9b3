"""Monte-Carlo dropout: predictive uncertainty from the model's own variational dropout masks.

The same sequence gets the same answer whatever batch TF Serving's request batching puts it in,
wherever in it, and however much padding the batch adds. So masks are not drawn by batch
position: example b's sample s uses the masks that b would draw alone (a batch of 1) with the
stateless seed [h_b, s] (`models.rnn.dropout`), where h_b hashes base_seed and b's own real
steps (their float32 bits or token ids, `example_hashes`): padding and neighbours never reach
it. With probabilities p_s (s = 1..N):

  probabilities       mean_s p_s                         (the MC predictive distribution)
  predictive_entropy  H[mean_s p_s]                      (total uncertainty)
  expected_entropy    mean_s H[p_s]                      (aleatoric part)
  mutual_information  H[mean_s p_s] - mean_s H[p_s] >= 0 (epistemic part; BALD)

Entropies are in nats, from `tfp.distributions.Categorical` (softmax heads) or `Bernoulli`
(sigmoid heads: one per label for multilabel). A model without dropout gives the same
probabilities every sample, so it is sampled once: probabilities then equal `serving_default`
exactly and mutual information is exactly 0.
"""

from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf
import tensorflow_probability as tfp

from models.heads import SIGMOID_HEADS
from models.heads import probabilities as head_probabilities

tfd = tfp.distributions


def has_dropout(model) -> bool:
    """True when the model's config has any keep probability below 1 (MC sampling varies)."""
    c = model.model_config
    return min(c.input_keep_prob, c.state_keep_prob, c.output_keep_prob, c.update_keep_prob) < 1.0


def example_hashes(values: tf.Tensor, lengths: tf.Tensor, base_seed: int) -> tf.Tensor:
    """int32 [B] in [0, 2^31 - 1): a hash of base_seed and each example's real steps only.

    Args:
      values: float32 [B, T, D] features or int32 [B, T] token ids; steps past a length are
        ignored, whatever they hold.
      lengths: int32 [B] (a length past T means all T steps, as the model reads it).
      base_seed: Python int, mixed in so that another seed gives other masks.
    """
    if values.dtype.is_floating:
        # The exact float32 bits, with -0.0 made 0.0 (one value to the model). By `where`, not
        # `+ 0.0`: grappler folds x + 0 to x inside functions (tf.function, a SavedModel in a TF1
        # session or TF Serving), and a sequence holding a -0.0 then got other MC masks there.
        values = tf.cast(values, tf.float32)
        values = tf.bitcast(tf.where(tf.equal(values, 0.0), tf.zeros_like(values), values), tf.int32)
    steps = tf.strings.as_string(values)
    if steps.shape.rank == 3:
        steps = tf.strings.reduce_join(steps, axis=2, separator=",")  # [B, T]
    time_steps = tf.shape(steps)[1]
    real = tf.sequence_mask(tf.minimum(lengths, time_steps), time_steps)
    # Every real step ends in ";" and padding adds nothing, so extra padding changes no string.
    text = tf.strings.reduce_join(tf.where(real, steps + ";", ""), axis=1)
    hashed = tf.strings.to_hash_bucket_fast(tf.strings.join([f"{int(base_seed)}:", text]), 2**31 - 1)
    return tf.cast(hashed, tf.int32)


def sample_seeds(hashes: tf.Tensor, sample) -> tf.Tensor:
    """int32 [B, 2]: the per-example stateless dropout seeds [h_b, sample] of MC sample `sample`
    (0-based, an int or int32 scalar); hashes: int32 [B] from `example_hashes`."""
    return tf.stack([hashes, tf.fill(tf.shape(hashes), tf.cast(sample, tf.int32))], axis=1)


def _entropy(head: str, probabilities: tf.Tensor) -> tf.Tensor:
    """Entropy in nats: softmax heads [..., C] -> [...]; sigmoid heads -> same shape (per label)."""
    if head in SIGMOID_HEADS:
        return tfd.Bernoulli(probs=probabilities).entropy()
    return tfd.Categorical(probs=probabilities).entropy()


def mc_dropout(model, inputs: Mapping[str, tf.Tensor], head: str, num_samples: int,
               base_seed: int) -> Dict[str, tf.Tensor]:
    """Monte-Carlo dropout statistics over `num_samples` seeded forward passes.

    Args:
      model: a `SequenceClassifier` (`model(inputs, training=True, seed=...)` -> logits).
      inputs: batch dict ("features" float32 [B, T, D] or "token_ids" int32 [B, T]; "lengths"
        int32 [B]).
      head: the head name.
      num_samples: N >= 1 (a model without dropout is sampled once whatever N is).
      base_seed: Python int; example b's sample s uses the stateless seed [h_b, s], h_b a hash
        of base_seed and b's real steps (`example_hashes`).

    Returns:
      dict of float32 tensors: "probabilities" (the head's probability shape: multiclass
      [B, C], binary [B, 1], multilabel [B, C], tagging [B, T, C]), and "predictive_entropy",
      "expected_entropy", "mutual_information" with shape multiclass/binary [B], multilabel
      [B, C], tagging [B, T] (0 past each length).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not has_dropout(model):
        probabilities = head_probabilities(model(inputs, training=False), head)
        entropy = _entropy(head, probabilities)
        return _finish(head, inputs, probabilities, entropy, entropy)

    hashes = example_hashes(inputs[model.input_key], inputs["lengths"], base_seed)

    def sample(s):
        logits = model(inputs, training=True, seed=sample_seeds(hashes, s))
        probs = head_probabilities(logits, head)
        return probs, _entropy(head, probs)

    prob_sum, entropy_sum = sample(0)

    def body(s, prob_sum, entropy_sum):
        probs, entropy = sample(s)
        return s + 1, prob_sum + probs, entropy_sum + entropy

    _, prob_sum, entropy_sum = tf.while_loop(
        lambda s, *_: s < num_samples, body, (tf.constant(1), prob_sum, entropy_sum))
    probabilities = prob_sum / float(num_samples)
    return _finish(head, inputs, probabilities, _entropy(head, probabilities),
                   entropy_sum / float(num_samples))


def _finish(head, inputs, probabilities, predictive, expected):
    # Jensen makes H[mean] >= mean H; clip the float rounding that can make it -1e-8.
    mutual = tf.maximum(predictive - expected, 0.0)
    if head == "binary":
        predictive, expected, mutual = (x[..., 0] for x in (predictive, expected, mutual))
    if head == "tagging":
        mask = tf.sequence_mask(inputs["lengths"], tf.shape(probabilities)[1])
        predictive, expected, mutual = (tf.where(mask, x, tf.zeros_like(x))
                                        for x in (predictive, expected, mutual))
    return {"probabilities": probabilities, "predictive_entropy": predictive,
            "expected_entropy": expected, "mutual_information": mutual}


def class_ids_from_probabilities(probabilities: tf.Tensor, head: str) -> tf.Tensor:
    """Decisions from (mean) probabilities, matching `models.heads.class_ids` on logits:
    argmax for softmax heads, p > 0.5 for sigmoid heads (binary -> int32 [B])."""
    if head == "binary":
        return tf.cast(probabilities[..., 0] > 0.5, tf.int32)
    if head == "multilabel":
        return tf.cast(probabilities > 0.5, tf.int32)
    return tf.argmax(probabilities, axis=-1, output_type=tf.int32)
