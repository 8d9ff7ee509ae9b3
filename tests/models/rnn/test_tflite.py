"""The inference path converts to TFLite with builtin ops only and runs with dynamic B and T."""

import contextlib
import io
import re

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from models.rnn import SequenceEncoder

pytestmark = pytest.mark.slow  # a TFLite conversion per test

D = 3


class _Exported(tf.Module):
    def __init__(self, encoder, dense):
        super().__init__()
        self.encoder, self.dense = encoder, dense

    @tf.function(input_signature=[tf.TensorSpec([None, None, D], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def serve(self, inputs, lengths):
        outputs, final = self.encoder(inputs, lengths, training=False)
        return self.dense(final), outputs


def _run(interpreter, inputs, lengths):
    """Resizes to this batch and length, runs, returns (logits, outputs)."""
    details = interpreter.get_input_details()
    for d in details:
        interpreter.resize_tensor_input(d["index"], inputs.shape if len(d["shape"]) == 3
                                        else lengths.shape)
    interpreter.allocate_tensors()
    for d in details:
        interpreter.set_tensor(d["index"], inputs if len(d["shape"]) == 3 else lengths)
    interpreter.invoke()
    results = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return sorted(results, key=lambda a: a.ndim)


def _ops(model):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=model)
    return set(re.findall(r"Op#\d+ (\w+)", buffer.getvalue()))


@pytest.mark.parametrize("cell,layers,bidirectional", [
    ("lstm", 1, False), ("gru", 1, False), ("lstm", 2, True), ("layer_norm_lstm", 1, False),
    ("peephole_lstm", 2, True)])
def test_converts_with_builtins_only_and_matches(cell, layers, bidirectional):
    tf.keras.utils.set_random_seed(0)
    # Dropout configured: the inference path must still convert (it draws no masks).
    encoder = SequenceEncoder(cell, units=5, num_layers=layers, bidirectional=bidirectional,
                              input_keep_prob=0.8, state_keep_prob=0.8, output_keep_prob=0.8)
    dense = tf.keras.layers.Dense(2)
    module = _Exported(encoder, dense)
    module.serve(tf.zeros([1, 2, D]), tf.constant([2]))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model = converter.convert()
    ops = _ops(model)
    assert "WHILE" in ops and "DYNAMIC_UPDATE_SLICE" in ops, ops
    assert not any(op.startswith("Flex") or "CUSTOM" in op for op in ops), ops

    interpreter = Interpreter(model_content=model)
    rng = np.random.default_rng(1)
    for batch, time, lengths in [(3, 6, [6, 2, 4]), (5, 11, [1, 11, 7, 3, 9])]:
        x = rng.normal(size=[batch, time, D]).astype(np.float32)
        lengths = np.array(lengths, np.int32)
        got = _run(interpreter, x, lengths)
        want = module.serve(x, lengths)
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)
