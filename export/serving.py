"""The serving graph: a `tf.Module` whose signatures TF Serving and `saved_model_cli` call.

Signatures (method `tensorflow/serving/predict`):
  serving_default  dense data: `features` float32 [batch, time, D] + `lengths` int32 [batch];
                   token data: `token_ids` int32 [batch, time] + `lengths`.
  text             token data only: `text` string [batch]; tokenized in the graph with core TF
                   string ops and the vocabulary asset (no tensorflow-text ops).
  embed            same inputs as serving_default; `embedding` float32 [batch, H'], the pooled
                   representation before the head (no dropout at inference).
  uncertainty      same inputs as serving_default; Monte-Carlo dropout (`export.uncertainty`).
Outputs: `logits`, `probabilities`, `class_ids` and `classes` (label strings); for tagging,
per step ([batch, time, ...]). Normalisation of dense features lives inside the model.
`tflite_function` is `serving_default` without the string output, for the TFLite converter.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from data.tokenizer import make_token_lookup, tokenize
from export.uncertainty import class_ids_from_probabilities, mc_dropout
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
    """Wraps a trained classifier and the data spec into exportable signatures.

    Args:
      model: a `SequenceClassifier`.
      spec: the `DataSpec` (labels, token settings).
      head: the resolved head name.
      vocab_path: the vocabulary file (token data), which becomes a SavedModel asset.
      mc_samples: Monte-Carlo samples of the `uncertainty` signature.
      mc_seed: base seed of those samples (mixed into each example's own mask seeds, `export.uncertainty`).
    """

    def __init__(self, model, spec, head: str, vocab_path: str = "", mc_samples: int = 20,
                 mc_seed: int = 0):
        super().__init__(name="serving")
        self.model = model
        # The raw tf.Variables under the Keras 3 wrappers, tracked directly (as Keras' own
        # ExportArchive does): otherwise the SavedModel restores copies named "Variable_N" while
        # the functions read the originals, and a session-based loader (TF Serving,
        # saved_model_cli run) fails with "Could not find variable". tf.saved_model.load does
        # not notice, since it rebinds captures through the object graph.
        self.raw_variables = [getattr(v, "value", v) for v in model.variables]
        self.head = head
        self.spec = spec
        self.mc_samples = int(mc_samples)
        self.mc_seed = int(mc_seed)
        self.label_strings = tf.constant(list(spec.labels), dtype=tf.string)
        if spec.is_tokens:
            self.vocab_asset = tf.saved_model.Asset(vocab_path)
            self.lookup = make_token_lookup(self.vocab_asset, spec.num_oov_buckets)

    def class_strings(self, ids: tf.Tensor) -> tf.Tensor:
        """Label strings of class ids (multilabel: the label where the bit is set, else "")."""
        if self.head == "multilabel":
            return tf.where(ids > 0, tf.broadcast_to(self.label_strings, tf.shape(ids)), "")
        return tf.gather(self.label_strings, ids)

    def outputs(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
        ids = head_class_ids(logits, self.head)
        return {"logits": logits, "probabilities": head_probabilities(logits, self.head),
                "class_ids": ids, "classes": self.class_strings(ids)}

    def predict(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self.outputs(self.model(inputs, training=False))

    def embed(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {"embedding": self.model.embed(inputs, training=False)}

    def uncertainty(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        result = mc_dropout(self.model, inputs, self.head, self.mc_samples, self.mc_seed)
        ids = class_ids_from_probabilities(result["probabilities"], self.head)
        return {**result, "class_ids": ids, "classes": self.class_strings(ids)}

    def token_inputs(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
        """text string [batch] -> token_ids int32 [batch, time] (0 = padding) and lengths int32 [batch]."""
        tokens = tokenize(text, lowercase=self.spec.lowercase)
        ids = self.lookup(tokens)  # ragged int32, 1..V vocabulary, V+1.. OOV buckets
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        if self.spec.max_length:
            ids = ids[:, : self.spec.max_length]
            lengths = tf.minimum(lengths, self.spec.max_length)
        return {"token_ids": tf.cast(ids.to_tensor(0), tf.int32), "lengths": lengths}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        spec = input_signature(self.spec)
        names = list(spec)
        numeric = [spec[names[0]], spec["lengths"]]

        @tf.function(input_signature=numeric)
        def serving_default(values, lengths):
            return self.predict({names[0]: values, "lengths": lengths})

        @tf.function(input_signature=numeric)
        def embed(values, lengths):
            return self.embed({names[0]: values, "lengths": lengths})

        @tf.function(input_signature=numeric)
        def uncertainty(values, lengths):
            return self.uncertainty({names[0]: values, "lengths": lengths})

        functions = {
            "serving_default": serving_default.get_concrete_function(),
            "embed": embed.get_concrete_function(),
            "uncertainty": uncertainty.get_concrete_function(),
        }
        if self.spec.is_tokens:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
            def text(strings):
                return self.predict(self.token_inputs(strings))

            functions["text"] = text.get_concrete_function()
        return functions

    def tflite_function(self) -> tf.types.experimental.ConcreteFunction:
        """`serving_default` minus `classes` (labels.txt maps class ids to strings there)."""
        spec = input_signature(self.spec)
        names = list(spec)

        @tf.function(input_signature=[spec[names[0]], spec["lengths"]])
        def serving_default(values, lengths):
            outputs = self.predict({names[0]: values, "lengths": lengths})
            return {key: outputs[key] for key in ("logits", "probabilities", "class_ids")}

        return serving_default.get_concrete_function()
