"""`SequenceClassifier`: inputs -> (normalise | embed) -> [front end] -> recurrent encoder ->
pooling -> head, with branches beside the recurrence concatenated before the head (the front
end's mean, random-convolution features for long series, a hashed n-gram bag for tokens).

Input is a batch dict (see `models/README.md`); only these keys are read:
  "features":  float32 [B, T, D] raw dense steps (normalised in-graph with the config's
               feature_mean / feature_std, so serving applies the same constants), or
  "token_ids": int32 [B, T], 0 = padding, ids < vocab_size;
  "lengths":   int32 [B], real steps per sequence. The only truth about padding: values past a
               length are never used (0.0 is a real feature value), whatever they hold.

`call` returns logits (see `models.heads` for shapes); `embed` the pooled representation.
Everything on the inference path is a TFLite builtin when the encoder's is (no TensorArray,
no scan, no -inf).
"""

from __future__ import annotations

from typing import Mapping, Optional

import keras
import numpy as np
import tensorflow as tf

from models.config import ModelConfig
from models.frontend import ConvFrontEnd, sequence_normalize
from models.heads import make_head, prior_bias
from models.ngram_bag import HashedNGramBag
from models.pooling import make_pooling, step_mask
from models.random_conv import RandomConvFeatures
from models.rnn.encoder import SequenceEncoder


class SequenceClassifier(keras.Model):
    """Recurrent sequence classifier built from a `ModelConfig`.

    Args:
      config: a `ModelConfig` whose data-derived fields are set (`check_buildable`).

    Call arguments:
      inputs: batch dict ("features" or "token_ids", and "lengths"); other keys ignored.
      training: Python bool; dropout only when True.
      seed: optional int32 [2] stateless seed for this batch's dropout masks, or [B, 2], one
        per example (each example's masks as if it were alone in its batch, so its result does
        not depend on the batch); None lets the encoder draw from its own generator.

    Output: float32 logits, multiclass [B, C], binary [B, 1], multilabel [B, C],
      tagging [B, T, C] (zeros past each length).
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        config.check_buildable()
        self.model_config = config
        self.head_name = config.resolved_head
        if config.uses_tokens:
            self.embedding = keras.layers.Embedding(
                config.vocab_size, config.resolved_embedding_dim, name="embedding")
            input_width = config.resolved_embedding_dim
        else:
            self.embedding = None
            input_width = config.feature_dim
        self.input_width = input_width
        strides = config.conv_strides
        if strides:
            self.frontend = ConvFrontEnd(config.conv_filters, config.conv_kernel_size, strides,
                                         name="frontend")
            input_width = config.conv_filters
        else:
            self.frontend = None
        self.encoder = SequenceEncoder(
            cell=config.cell, units=config.hidden_units, num_layers=config.num_layers,
            bidirectional=config.bidirectional, input_keep_prob=config.input_keep_prob,
            state_keep_prob=config.state_keep_prob, output_keep_prob=config.output_keep_prob,
            variational_recurrent=config.variational_recurrent,
            mask_per_example=config.mask_per_example, update_keep_prob=config.update_keep_prob,
            forget_bias=config.forget_bias, name="encoder")
        # Pooling and head compute in float32 whatever the global dtype policy: under mixed
        # precision only the embedding and the encoder (nearly all the work) run in float16 /
        # bfloat16, and logits, attention softmax and means keep float32's range and precision.
        self.pooling = make_pooling(config.resolved_pooling, name="pooling", dtype="float32")
        self.branch_pooling = (make_pooling("mean", name="branch_pooling", dtype="float32")
                               if self.frontend is not None and config.conv_branch else None)
        # MiniROCKET-style features of the (normalised) input steps, beside the recurrence.
        self.random_features = (
            RandomConvFeatures(config.feature_dim, max(config.reference_length, 1),
                               config.random_features, name="random_features")
            if config.uses_random_features else None)
        # fastText-style mean of hashed n-gram embeddings, beside the recurrence.
        self.ngram_bag = (HashedNGramBag(config.ngram_orders, config.ngram_buckets, config.ngram_dim,
                                         name="ngram_bag")
                          if config.uses_ngram_bag else None)
        bias = None
        if config.prior_bias_init and config.class_counts:
            bias = prior_bias(self.head_name, config.class_counts, config.num_train_examples)
        self.head = make_head(self.head_name, config.num_classes, bias_init=bias, name="head",
                              dtype="float32")
        if not config.uses_tokens and config.feature_mean:
            self._mean = np.asarray(config.feature_mean, np.float32)
            self._std = np.asarray(config.feature_std or [1.0] * config.feature_dim, np.float32)
        else:
            self._mean = self._std = None

    def build(self, inputs_shape=None):
        # Sublayers build on their first call; a tagging model never calls its (weightless)
        # pooling in `call`, so build it here to keep Keras' bookkeeping honest.
        width = self.encoder.output_size
        if not self.pooling.built:
            self.pooling.build((None, None, width), (None, width), (None,))
        self.built = True

    @property
    def input_key(self) -> str:
        """The batch key this model reads besides "lengths"."""
        return "token_ids" if self.model_config.uses_tokens else "features"

    def _input_steps(self, inputs: Mapping[str, tf.Tensor]):
        """(steps float32 [B, T, D'] normalised (or embedded), exact zeros past each length,
        lengths int32 [B]): what the front end, or the encoder, reads."""
        steps = inputs[self.input_key]
        # A length past T means "all of it"; pooling divides by the clipped length. (`minimum`,
        # not `clip_by_value`: the latter lowers to an int32 Relu6, which TFLite lacks.)
        lengths = tf.minimum(tf.cast(inputs["lengths"], tf.int32), tf.shape(steps)[1])
        if self.embedding is not None:
            token_ids = tf.cast(steps, tf.int32)
            mask = step_mask(lengths, tf.shape(token_ids)[1])
            # Padded ids may be anything (even out of range): look up row 0 there instead.
            token_ids = tf.where(mask, token_ids, tf.zeros_like(token_ids))
            steps = self.embedding(token_ids)
        else:
            steps = tf.cast(steps, tf.float32)
            mask = step_mask(lengths, tf.shape(steps)[1])
            if self._mean is not None:
                steps = (steps - tf.constant(self._mean)) / tf.constant(self._std)
        # `where`, not a multiply: garbage past a length (even NaN) must not reach the encoder,
        # and its gradient there is exactly zero.
        steps = tf.where(tf.expand_dims(mask, -1), steps, tf.zeros_like(steps))
        if self.model_config.uses_sequence_norm:
            steps = sequence_normalize(steps, lengths)
        return steps, lengths

    def adapt(self, batches) -> None:
        """Fits what is fitted to data rather than trained (the random features' biases and
        standardisation) on a sample of training batches (batch dicts, any padded lengths).
        A no-op for models without random features."""
        if self.random_features is None:
            return
        prepared = [self._input_steps(batch) for batch in batches]
        longest = max(int(steps.shape[1]) for steps, _ in prepared)
        steps = tf.concat([tf.pad(s, [[0, 0], [0, longest - int(s.shape[1])], [0, 0]])
                           for s, _ in prepared], axis=0)
        lengths = tf.concat([length for _, length in prepared], axis=0)
        self.random_features.adapt(steps, lengths)

    def encode(self, inputs, training=False, seed=None, return_sequences=True):
        """(outputs float32 [B, T', H], final float32 [B, H], lengths int32 [B]).

        T' and lengths are after the front end (ceil(T / conv_stride)). With
        return_sequences=False the encoder skips its top layer's output buffer and outputs is
        None.
        """
        outputs, final, lengths, _ = self._encode(inputs, training, seed, return_sequences)
        return outputs, final, lengths

    def _encode(self, inputs, training, seed, return_sequences):
        """`encode`'s triple plus what the branches beside the recurrence read: a dict with
        "frontend" (the front end's outputs [B, T', D'], when there is one), "random"
        (the random-convolution features [B, F], when there are some) and "ngram" (the n-gram
        bag [B, ngram_dim], when there is one)."""
        steps, lengths = self._input_steps(inputs)
        branches = {}
        if self.ngram_bag is not None:
            branches["ngram"] = self.ngram_bag(inputs["token_ids"], lengths, training=training)
        if self.random_features is not None:
            branches["random"] = self.random_features(steps, lengths)
        if self.frontend is not None:
            steps, lengths = self.frontend(steps, lengths)
            branches["frontend"] = steps
        outputs, final = self.encoder(steps, lengths, training=training, seed=seed,
                                      return_sequences=return_sequences)
        return outputs, final, lengths, branches

    @property
    def _needs_sequences(self) -> bool:
        """Whether anything downstream reads per-step outputs (only "last" pooling does not)."""
        return self.head_name == "tagging" or self.model_config.resolved_pooling != "last"

    def _pool(self, outputs, final, lengths, branches):
        """float32 [B, H']: the pooling of the encoder's outputs, then with `conv_branch` the
        mean of the front end's outputs over real steps (LSTM-FCN's two branches), then the
        random-convolution features, then the n-gram bag."""
        parts = [self.pooling(outputs, final, lengths)]
        if self.branch_pooling is not None:
            parts.append(self.branch_pooling(tf.cast(branches["frontend"], tf.float32), None,
                                             lengths))
        for name in ("random", "ngram"):
            if name in branches:
                parts.append(branches[name])
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def embed(self, inputs, training=False, seed=None):
        """float32 [B, H']: the pooled representation the sequence-level heads read."""
        outputs, final, lengths, branches = self._encode(
            inputs, training, seed, return_sequences=self.model_config.resolved_pooling != "last")
        return self._pool(outputs, final, lengths, branches)

    def call(self, inputs, training=False, seed=None):
        outputs, final, lengths, branches = self._encode(inputs, training, seed,
                                                         return_sequences=self._needs_sequences)
        # The tagging head reads per-step outputs; its pooling is only for `embed`.
        pooled = (final if self.head_name == "tagging"
                  else self._pool(outputs, final, lengths, branches))
        return self.head(pooled, outputs, lengths)

    def get_config(self):
        return {"name": self.name, "config": self.model_config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = config.pop("config")
        if not isinstance(model_config, ModelConfig):
            model_config = ModelConfig.from_dict(model_config)
        return cls(model_config, name=config.get("name"))


def dummy_batch(config: ModelConfig, batch_size: int = 1, max_time: int = 2):
    """A batch dict of zeros with full lengths, for building variables and tracing."""
    lengths = tf.fill([batch_size], tf.constant(max_time, tf.int32))
    if config.uses_tokens:
        return {"token_ids": tf.ones([batch_size, max_time], tf.int32), "lengths": lengths}
    return {"features": tf.zeros([batch_size, max_time, config.feature_dim], tf.float32),
            "lengths": lengths}


def build_model(config: ModelConfig, dtype_policy: Optional[str] = None) -> SequenceClassifier:
    """A `SequenceClassifier` with every variable created (so a checkpoint can be restored
    before the first training step).

    dtype_policy: a Keras dtype policy name for the model's layers ("float32",
      "mixed_float16", "mixed_bfloat16"); None takes the global policy
      (`keras.config.dtype_policy()`). Variables are float32 under every policy, so weights
      move freely between a mixed-precision model and its float32 twin.
    """
    previous = keras.config.dtype_policy()
    if dtype_policy is not None:
        keras.config.set_dtype_policy(dtype_policy)
    try:
        model = SequenceClassifier(config)
        model(dummy_batch(config), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    return model
