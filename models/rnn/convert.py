"""Weight conversion between this package's cells and TF1 / Keras layouts (NumPy in, out).

Layouts (D input size, H units):
- ours, "lstm": kernel [D, 4H], recurrent_kernel [H, 4H], bias [4H], gates [i, j, f, o]
  (TF1 order), forget_bias added at call time (not stored).
- TF1 `LSTMCell`/`BasicLSTMCell`: one fused kernel [D + H, 4H] (rows: inputs then h), bias
  [4H], gates [i, j, f, o], forget_bias added at call time.
- Keras `LSTM`/`LSTMCell`: kernel [D, 4H], recurrent_kernel [H, 4H], bias [4H], gates
  [i, f, c, o] (c = TF1's j); the forget bias is stored in the bias (unit_forget_bias).
- TF1 `GRUCell`: gates/kernel [D + H, 2H] ([r, u]), gates/bias [2H], candidate/kernel
  [D + H, H], candidate/bias [H]. Ours: kernel [D, 3H] ([r, u, c]), recurrent_kernel [H, 2H],
  candidate_recurrent_kernel [H, H], bias [3H].
- TF1 `BasicRNNCell`: kernel [D + H, H], bias [H].
- TF1 `LayerNormBasicLSTMCell`: kernel [D + H, 4H] (no bias), layer-norm gamma/beta [H] for
  scopes input, transform, forget, output, state. Ours: gamma/beta [5, H] in that order.

Cell weights are exchanged as dicts {name: array}; `get_weights` / `set_weights` read and
write a built cell by those names.
"""

import numpy as np

_LN_SCOPES = ("input", "transform", "forget", "output", "state")


def _split_rows(fused, input_size):
    fused = np.asarray(fused)
    return fused[:input_size], fused[input_size:]


def _ifco_to_ijfo(a):
    i, f, c, o = np.split(np.asarray(a), 4, axis=-1)
    return np.concatenate([i, c, f, o], axis=-1)


def _ijfo_to_ifco(a):
    i, j, f, o = np.split(np.asarray(a), 4, axis=-1)
    return np.concatenate([i, f, j, o], axis=-1)


def _forget_shift(units, forget_bias):
    shift = np.zeros([4 * units], np.float32)
    shift[2 * units: 3 * units] = forget_bias
    return shift


def lstm_from_tf1(kernel, bias, input_size):
    """TF1 LSTMCell (kernel [D+H, 4H], bias [4H]) -> ours {kernel, recurrent_kernel, bias}."""
    k, rk = _split_rows(kernel, input_size)
    return {"kernel": k, "recurrent_kernel": rk, "bias": np.asarray(bias)}


def lstm_to_tf1(weights):
    """Ours -> TF1 LSTMCell: (kernel [D+H, 4H], bias [4H])."""
    return (np.concatenate([weights["kernel"], weights["recurrent_kernel"]], 0),
            np.asarray(weights["bias"]))


def lstm_from_keras(kernel, recurrent_kernel, bias, forget_bias=1.0):
    """Keras LSTM ([i, f, c, o], forget bias stored) -> ours with this `forget_bias`."""
    units = np.asarray(recurrent_kernel).shape[0]
    return {"kernel": _ifco_to_ijfo(kernel), "recurrent_kernel": _ifco_to_ijfo(recurrent_kernel),
            "bias": _ifco_to_ijfo(bias) - _forget_shift(units, forget_bias)}


def lstm_to_keras(weights, forget_bias=1.0):
    """Ours (with this `forget_bias`) -> Keras LSTM [kernel, recurrent_kernel, bias]."""
    units = np.asarray(weights["recurrent_kernel"]).shape[0]
    return [_ijfo_to_ifco(weights["kernel"]), _ijfo_to_ifco(weights["recurrent_kernel"]),
            _ijfo_to_ifco(np.asarray(weights["bias"]) + _forget_shift(units, forget_bias))]


def gru_from_tf1(gate_kernel, gate_bias, candidate_kernel, candidate_bias, input_size):
    """TF1 GRUCell weights -> ours {kernel, recurrent_kernel, candidate_recurrent_kernel, bias}."""
    gk, grk = _split_rows(gate_kernel, input_size)
    ck, crk = _split_rows(candidate_kernel, input_size)
    return {"kernel": np.concatenate([gk, ck], 1), "recurrent_kernel": grk,
            "candidate_recurrent_kernel": crk,
            "bias": np.concatenate([gate_bias, candidate_bias], 0)}


def gru_to_tf1(weights):
    """Ours -> TF1 GRUCell (gate_kernel, gate_bias, candidate_kernel, candidate_bias)."""
    units = np.asarray(weights["candidate_recurrent_kernel"]).shape[0]
    k, b = np.asarray(weights["kernel"]), np.asarray(weights["bias"])
    return (np.concatenate([k[:, : 2 * units], weights["recurrent_kernel"]], 0), b[: 2 * units],
            np.concatenate([k[:, 2 * units:], weights["candidate_recurrent_kernel"]], 0),
            b[2 * units:])


def rnn_from_tf1(kernel, bias, input_size):
    """TF1 BasicRNNCell (kernel [D+H, H], bias [H]) -> ours."""
    k, rk = _split_rows(kernel, input_size)
    return {"kernel": k, "recurrent_kernel": rk, "bias": np.asarray(bias)}


def rnn_to_tf1(weights):
    """Ours -> TF1 BasicRNNCell (kernel [D+H, H], bias [H])."""
    return (np.concatenate([weights["kernel"], weights["recurrent_kernel"]], 0),
            np.asarray(weights["bias"]))


def layer_norm_lstm_from_tf1(kernel, norms, input_size):
    """TF1 LayerNormBasicLSTMCell -> ours.

    norms: {scope: (gamma [H], beta [H])} for scopes input, transform, forget, output, state.
    """
    k, rk = _split_rows(kernel, input_size)
    return {"kernel": k, "recurrent_kernel": rk,
            "gamma": np.stack([norms[s][0] for s in _LN_SCOPES]),
            "beta": np.stack([norms[s][1] for s in _LN_SCOPES])}


def layer_norm_lstm_to_tf1(weights):
    """Ours -> TF1 LayerNormBasicLSTMCell (kernel [D+H, 4H], {scope: (gamma, beta)})."""
    kernel = np.concatenate([weights["kernel"], weights["recurrent_kernel"]], 0)
    return kernel, {s: (weights["gamma"][k], weights["beta"][k]) for k, s in enumerate(_LN_SCOPES)}


def get_weights(cell):
    """{name: np.ndarray} of a built cell, keyed by the names used above."""
    return {_short(v): np.asarray(v.numpy()) for v in cell.weights}


def set_weights(cell, weights):
    """Assigns {name: array} to a built cell; every cell weight must be given."""
    variables = {_short(v): v for v in cell.weights}
    missing = set(variables) - set(weights)
    if missing:
        raise ValueError(f"Missing weights {sorted(missing)} for cell {cell.name}.")
    for name, value in weights.items():
        variables[name].assign(np.asarray(value, np.float32))


def _short(variable):
    return variable.path.split("/")[-1] if hasattr(variable, "path") else variable.name
