"""Weight conversion: round trips, and Keras LSTM weights giving Keras' numbers in ours.
(Loading TF1 weights and matching TF1's outputs is test_reference.py.)"""

import keras
import numpy as np

from models.rnn import SequenceEncoder, convert

RNG = np.random.default_rng(0)
D, H = 3, 4


def _rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def test_lstm_round_trips():
    tf1_kernel, tf1_bias = _rand(D + H, 4 * H), _rand(4 * H)
    ours = convert.lstm_from_tf1(tf1_kernel, tf1_bias, D)
    back = convert.lstm_to_tf1(ours)
    np.testing.assert_array_equal(back[0], tf1_kernel)
    np.testing.assert_array_equal(back[1], tf1_bias)
    keras_weights = convert.lstm_to_keras(ours, forget_bias=1.0)
    again = convert.lstm_from_keras(*keras_weights, forget_bias=1.0)
    for name in ours:
        np.testing.assert_allclose(again[name], ours[name], atol=1e-6)
    # Gate order really changes: Keras' f block is TF1's f block plus the forget bias.
    np.testing.assert_allclose(keras_weights[2][H:2 * H], tf1_bias[2 * H:3 * H] + 1.0)


def test_gru_rnn_layer_norm_round_trips():
    gru = (_rand(D + H, 2 * H), _rand(2 * H), _rand(D + H, H), _rand(H))
    for a, b in zip(convert.gru_to_tf1(convert.gru_from_tf1(*gru, D)), gru):
        np.testing.assert_array_equal(a, b)
    rnn = (_rand(D + H, H), _rand(H))
    for a, b in zip(convert.rnn_to_tf1(convert.rnn_from_tf1(*rnn, D)), rnn):
        np.testing.assert_array_equal(a, b)
    norms = {s: (_rand(H), _rand(H)) for s in ("input", "transform", "forget", "output", "state")}
    kernel, back = convert.layer_norm_lstm_to_tf1(
        convert.layer_norm_lstm_from_tf1(_rand(D + H, 4 * H) * 0 + 1, norms, D))
    assert kernel.shape == (D + H, 4 * H)
    for scope in norms:
        np.testing.assert_array_equal(back[scope][0], norms[scope][0])


def test_keras_lstm_weights_reproduce_keras_outputs():
    x = _rand(2, 5, D)
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    want_seq, want_h, want_c = [t.numpy() for t in layer(x)]
    layer.set_weights([w + 0.1 * _rand(*w.shape) for w in layer.get_weights()])
    want_seq, want_h, want_c = [t.numpy() for t in layer(x)]
    encoder = SequenceEncoder("lstm", units=H, forget_bias=1.0)
    lengths = np.full([2], 5, np.int32)
    encoder(x, lengths)
    convert.set_weights(encoder.wrappers[0][0].cell,
                        convert.lstm_from_keras(*layer.get_weights(), forget_bias=1.0))
    seq, final, states = encoder(x, lengths, return_state=True)
    np.testing.assert_allclose(seq, want_seq, atol=1e-5)
    np.testing.assert_allclose(final, want_h, atol=1e-5)
    np.testing.assert_allclose(states[0][0]["c"], want_c, atol=1e-5)
    # And back: ours -> Keras gives the same Keras layer.
    for a, b in zip(convert.lstm_to_keras(convert.get_weights(encoder.wrappers[0][0].cell)),
                    layer.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
