"""The serving graph: a `tf.Module` whose signatures TF Serving and `saved_model_cli` call.

Signatures (method `tensorflow/serving/predict`):
  serving_default  dense data: `features` float32 [batch, time, D] + `lengths` int32 [batch];
                   token data: `token_ids` int32 [batch, time] + `lengths`.
  text             token data only: `text` string [batch]; tokenized in the graph with core TF
                   string ops and the vocabulary asset (no tensorflow-text ops).
  embed            same inputs as serving_default; the pooled representation before the head.
Outputs: `logits`, `probabilities`, `class_ids` and `classes` (label strings); for tagging,
per step ([batch, time, ...]). Normalisation of dense features lives inside the model.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from data.tokenizer import make_token_lookup, tokenize
from models.heads import class_ids as head_class_ids
from models.heads import probabilities as head_probabilities


def input_signature(spec) -> Dict[str, tf.TensorSpec]:
    """TensorSpecs of the numeric serving inputs, with free batch and time dimensions."""
    if spec.is_tokens:
        values = tf.TensorSpec([None, None], tf.int32, name="token_ids")
    else:
        values = tf.TensorSpec([None, None, spec.feature_dim], tf.float32, name="features")
    return {values.name: values, "lengths": tf.TensorSpec([None], tf.int32, name="lengths")}


class ServingModule(tf.Module):
    """Wraps a trained classifier and the data spec into exportable signatures."""

    def __init__(self, model, spec, head: str, vocab_path: str = ""):
        super().__init__(name="serving")
        self.model = model
        self.head = head
        self.spec = spec
        self.label_strings = tf.constant(list(spec.labels), dtype=tf.string)
        if spec.is_tokens:
            self.vocab_asset = tf.saved_model.Asset(vocab_path)
            self.lookup = make_token_lookup(self.vocab_asset, spec.num_oov_buckets)

    def outputs(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
        ids = head_class_ids(logits, self.head)
        return {
            "logits": logits,
            "probabilities": head_probabilities(logits, self.head),
            "class_ids": ids,
            "classes": tf.gather(self.label_strings, ids) if self.head != "multilabel" else
            tf.where(ids > 0, tf.broadcast_to(self.label_strings, tf.shape(ids)), ""),
        }

    def predict(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self.outputs(self.model(inputs, training=False))

    def embed(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {"embedding": self.model.embed(inputs, training=False)}

    def token_inputs(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
        """text string [batch] -> token_ids int32 [batch, time] (0 = padding) and lengths int32 [batch]."""
        tokens = tokenize(text, lowercase=self.spec.lowercase)
        ids = tf.ragged.map_flat_values(self.lookup.lookup, tokens)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        if self.spec.max_length:
            ids = ids[:, : self.spec.max_length]
            lengths = tf.minimum(lengths, self.spec.max_length)
        return {"token_ids": tf.cast(ids.to_tensor(0), tf.int32), "lengths": lengths}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        spec = input_signature(self.spec)
        names = list(spec)

        @tf.function(input_signature=[spec[names[0]], spec["lengths"]])
        def serving_default(values, lengths):
            return self.predict({names[0]: values, "lengths": lengths})

        @tf.function(input_signature=[spec[names[0]], spec["lengths"]])
        def embed(values, lengths):
            return self.embed({names[0]: values, "lengths": lengths})

        functions = {
            "serving_default": serving_default.get_concrete_function(),
            "embed": embed.get_concrete_function(),
        }
        if self.spec.is_tokens:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
            def text(strings):
                return self.predict(self.token_inputs(strings))

            functions["text"] = text.get_concrete_function()
        return functions
