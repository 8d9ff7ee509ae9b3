"""Recurrent cells, split into an input projection (hoisted out of the time loop) and a step.

Every cell follows the gate math of its TF1 counterpart (`tf.compat.v1.nn.rnn_cell.LSTMCell`,
`GRUCell`, `BasicRNNCell`, `tf.contrib.rnn.LayerNormBasicLSTMCell`) so that weights converted
from a TF1 checkpoint (see `convert.py`) give the same numbers. The TF1 fused kernel
`[D + H, G]` is stored split as `kernel [D, G]` (applied to all time steps in one matmul by
`project_inputs`) and `recurrent_kernel [H, G]` (applied once per step by `step`).

Cells are chosen by name: `get_cell("lstm", units=64)`; `CELLS` is the registry. A cell class
also says how it is exported (`gates`, `equations`, `gate_arrays`, the `onnx_*` fields), so a new
cell is this file, its test and its name in `models.config.CELLS` (which validates configs
without importing TensorFlow).
"""

from typing import Dict, Tuple

import keras
import numpy as np
import tensorflow as tf

from models.rnn import convert

CELLS = {}


def register_cell(name):
    """Class decorator adding a cell class to `CELLS` under `name`; a name already taken raises."""

    def wrap(cls):
        if name in CELLS:
            raise ValueError(f"cell {name!r} is already registered (by {CELLS[name].__name__})")
        CELLS[name] = cls
        cls.cell_name = name
        return cls

    return wrap


def get_cell(cell_name, **kwargs):
    """Builds the cell registered as `cell_name` (one of `CELLS`) with `kwargs`."""
    if cell_name not in CELLS:
        raise ValueError(f"Unknown cell {cell_name!r}; expected one of {sorted(CELLS)}.")
    return CELLS[cell_name](**kwargs)


class RecurrentCell(keras.layers.Layer):
    """Base class: a cell as (projection of all inputs, one step of the recurrence).

    Subclasses set `state_names` (e.g. `("c", "h")`; the state named "h" is the one the next
    layer and the classifier see) and implement `project_inputs`, `step` and `gate_arrays`.

    Export description (read by `export/weights.py`, which writes it into `weights.json`, and
    through that manifest by `export/onnx_graph.py`):
      gates: gate names in the order `gate_arrays` splits the fused kernels.
      equations: the step in words, for people running the weights elsewhere.
      forget_bias_in_bias: whether `gate_arrays` folds `forget_bias` into the f gate's bias.
      onnx_operator: ONNX's operator for this recurrence ("" when there is none), with
      onnx_gates (the gates in that operator's order), onnx_attributes (a list value is
      given once per direction) and onnx_peepholes (gates whose "<gate>/peephole" [H] arrays
      form ONNX LSTM's P input, in its order; () for none).
    Constructor: `uses_forget_bias` cells take `forget_bias=`.

    Args:
      units: int, H, size of the output and of every state component.
    """

    state_names = ("h",)
    uses_update_dropout = False
    uses_forget_bias = False
    gates: Tuple[str, ...] = ()
    equations = ""
    forget_bias_in_bias = False
    onnx_operator = ""
    onnx_gates: Tuple[str, ...] = ()
    onnx_attributes: Dict[str, object] = {}
    onnx_peepholes: Tuple[str, ...] = ()

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    @property
    def output_size(self):
        return self.units

    @property
    def state_sizes(self):
        return tuple(self.units for _ in self.state_names)

    def zero_state(self, batch_size, dtype=tf.float32):
        """Returns a tuple of zeros [batch_size, H] of `dtype`, one per state component."""
        return tuple(tf.zeros([batch_size, self.units], dtype) for _ in self.state_names)

    def project_inputs(self, inputs):
        """inputs: float32 [..., D] -> float32 [..., gate_size] (input part of every gate)."""
        raise NotImplementedError

    def recurrent_weights(self):
        """Tensors `step` needs, read once before the loop (TFLite cannot read variables
        inside a WHILE body, and one read per call is cheaper than one per step)."""
        return (tf.convert_to_tensor(self.recurrent_kernel),)

    def step(self, projected, states, weights, update_mask=None):
        """One time step.

        Args:
          projected: float32 [B, gate_size], `project_inputs` of this step's input.
          states: tuple of float32 [B, H] in `state_names` order.
          weights: `recurrent_weights()`.
          update_mask: optional float32 [1 or B, H], scaled keep mask (only cells with
            `uses_update_dropout`).
        Returns:
          (output float32 [B, H], new_states tuple of float32 [B, H]).
        """
        raise NotImplementedError

    def gate_arrays(self) -> Dict[str, np.ndarray]:
        """{"<gate>/<kind>": float32 array} of the built cell, one entry per gate in `gates` and
        kind (kernel [D, H], recurrent_kernel [H, H], bias [H], or the cell's own)."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


def _split(array, count):
    """A fused [..., count * H] array as `count` float32 arrays [..., H]."""
    return np.split(np.asarray(array, np.float32), count, axis=-1)


def _per_gate(gates, **kinds):
    """{"<gate>/<kind>": array}: kinds maps a kind to one array per gate, in `gates` order."""
    return {f"{gate}/{kind}": np.asarray(arrays[index], np.float32)
            for kind, arrays in kinds.items() for index, gate in enumerate(gates)}


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    """LSTM as TF1 `LSTMCell` (no peepholes, no projection): gates in order [i, j, f, o].

    c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j);  h' = sigmoid(o) * tanh(c').
    `forget_bias` is added at call time (the stored bias starts at zero), as in TF1.

    Weights: kernel [D, 4H], recurrent_kernel [H, 4H], bias [4H].
    """

    state_names = ("c", "h")
    uses_forget_bias = True
    gates = ("i", "f", "c", "o")  # Keras order (c is TF1's j)
    equations = ("c' = sigmoid(f) * c + sigmoid(i) * tanh(c_gate); h' = sigmoid(o) * tanh(c'); "
                 "gate g = x W_g + h U_g + b_g (forget_bias already in b_f)")
    forget_bias_in_bias = True
    onnx_operator = "LSTM"
    onnx_gates = ("i", "o", "f", "c")

    def __init__(self, units, forget_bias=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.forget_bias = float(forget_bias)

    def build(self, input_shape):
        d, h = int(input_shape[-1]), self.units
        self.kernel = self.add_weight(shape=(d, 4 * h), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(h, 4 * h), initializer="orthogonal", name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * h,), initializer="zeros", name="bias")

    def gate_arrays(self):
        kernel, recurrent, bias = convert.lstm_to_keras(convert.get_weights(self), self.forget_bias)
        return _per_gate(self.gates, kernel=_split(kernel, 4), recurrent_kernel=_split(recurrent, 4),
                         bias=_split(bias, 4))

    def project_inputs(self, inputs):
        h = self.units
        # forget_bias folded into the bias once instead of added at every step.
        shift = tf.concat([tf.zeros([2 * h]), tf.fill([h], self.forget_bias), tf.zeros([h])], 0)
        bias = tf.convert_to_tensor(self.bias)
        return tf.tensordot(inputs, self.kernel, 1) + (bias + tf.cast(shift, bias.dtype))

    def step(self, projected, states, weights, update_mask=None):
        c, h = states
        z = projected + tf.matmul(h, weights[0])
        i, j, f, o = tf.split(z, 4, axis=-1)
        new_c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(j)
        new_h = tf.sigmoid(o) * tf.tanh(new_c)
        return new_h, (new_c, new_h)

    def get_config(self):
        config = super().get_config()
        config.update(forget_bias=self.forget_bias)
        return config


@register_cell("peephole_lstm")
class PeepholeLSTMCell(LSTMCell):
    """LSTM with peepholes, as TF1 `LSTMCell(use_peepholes=True)` (Gers & Schmidhuber 2000):
    the input and forget gates also read c, the output gate reads c'.

    i = sigmoid(z_i + w_i * c);  f = sigmoid(z_f + forget_bias + w_f * c);
    c' = f * c + i * tanh(z_j);  h' = sigmoid(z_o + w_o * c') * tanh(c')  (z = x W + h U + b).

    Weights: LSTMCell's plus w_i_diag, w_f_diag, w_o_diag [H] (TF1's names and initialiser,
    Glorot uniform).
    """

    equations = ("i = sigmoid(x W_i + h U_i + b_i + p_i * c); f = sigmoid(x W_f + h U_f + b_f + "
                 "p_f * c); c' = f * c + i * tanh(x W_c + h U_c + b_c); "
                 "h' = sigmoid(x W_o + h U_o + b_o + p_o * c') * tanh(c') "
                 "(forget_bias already in b_f; p_g is the gate's peephole [H])")
    onnx_peepholes = ("i", "o", "f")  # ONNX LSTM's P input: [3H] in this order

    def build(self, input_shape):
        super().build(input_shape)
        self.w_i_diag, self.w_f_diag, self.w_o_diag = (
            self.add_weight(shape=(self.units,), initializer="glorot_uniform", name=name)
            for name in ("w_i_diag", "w_f_diag", "w_o_diag"))

    def recurrent_weights(self):
        return tuple(tf.convert_to_tensor(w) for w in (
            self.recurrent_kernel, self.w_i_diag, self.w_f_diag, self.w_o_diag))

    def step(self, projected, states, weights, update_mask=None):
        c, h = states
        recurrent_kernel, w_i, w_f, w_o = weights
        i, j, f, o = tf.split(projected + tf.matmul(h, recurrent_kernel), 4, axis=-1)
        new_c = tf.sigmoid(f + w_f * c) * c + tf.sigmoid(i + w_i * c) * tf.tanh(j)
        new_h = tf.sigmoid(o + w_o * new_c) * tf.tanh(new_c)
        return new_h, (new_c, new_h)

    def gate_arrays(self):
        out = super().gate_arrays()
        for gate, weight in (("i", self.w_i_diag), ("f", self.w_f_diag), ("o", self.w_o_diag)):
            out[f"{gate}/peephole"] = np.asarray(weight.numpy(), np.float32)
        return out


def _gru_bias_init(shape, dtype=None):
    """TF1 GRUCell starts the [r, u] gate bias at 1.0 and the candidate bias at 0."""
    h = shape[0] // 3
    return tf.concat([tf.ones([2 * h], dtype or "float32"), tf.zeros([h], dtype or "float32")], 0)


@register_cell("gru")
class GRUCell(RecurrentCell):
    """GRU as TF1 `GRUCell` (reset applied to the state before the candidate matmul).

    [r, u] = sigmoid(x Wg + h Ug + bg);  c = tanh(x Wc + (r * h) Uc + bc);
    h' = u * h + (1 - u) * c.

    Weights: kernel [D, 3H] (columns [r, u, candidate]), recurrent_kernel [H, 2H] (r, u),
    candidate_recurrent_kernel [H, H], bias [3H] (gate part starts at 1.0 like TF1).
    """

    gates = ("r", "u", "c")
    equations = ("r = sigmoid(x W_r + h U_r + b_r); u = sigmoid(x W_u + h U_u + b_u); "
                 "c = tanh(x W_c + (r * h) U_c + b_c); h' = u * h + (1 - u) * c")
    onnx_operator = "GRU"
    onnx_gates = ("u", "r", "c")  # ONNX z r h: z is our update gate u, h our candidate c
    onnx_attributes = {"linear_before_reset": 0}

    def build(self, input_shape):
        d, h = int(input_shape[-1]), self.units
        self.kernel = self.add_weight(shape=(d, 3 * h), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(h, 2 * h), initializer="orthogonal", name="recurrent_kernel")
        self.candidate_recurrent_kernel = self.add_weight(
            shape=(h, h), initializer="orthogonal", name="candidate_recurrent_kernel")
        self.bias = self.add_weight(shape=(3 * h,), initializer=_gru_bias_init, name="bias")

    def project_inputs(self, inputs):
        return tf.tensordot(inputs, self.kernel, 1) + self.bias

    def recurrent_weights(self):
        return (tf.convert_to_tensor(self.recurrent_kernel),
                tf.convert_to_tensor(self.candidate_recurrent_kernel))

    def gate_arrays(self):
        weights = convert.get_weights(self)
        recurrent = _split(weights["recurrent_kernel"], 2) + [weights["candidate_recurrent_kernel"]]
        return _per_gate(self.gates, kernel=_split(weights["kernel"], 3), recurrent_kernel=recurrent,
                         bias=_split(weights["bias"], 3))

    def step(self, projected, states, weights, update_mask=None):
        (h,) = states
        gx, cx = projected[:, : 2 * self.units], projected[:, 2 * self.units:]
        recurrent_kernel, candidate_recurrent_kernel = weights
        r, u = tf.split(tf.sigmoid(gx + tf.matmul(h, recurrent_kernel)), 2, axis=-1)
        c = tf.tanh(cx + tf.matmul(r * h, candidate_recurrent_kernel))
        new_h = u * h + (1.0 - u) * c
        return new_h, (new_h,)


@register_cell("rnn")
class SimpleRNNCell(RecurrentCell):
    """Elman RNN as TF1 `BasicRNNCell`: h' = tanh(x W + h U + b).

    Weights: kernel [D, H], recurrent_kernel [H, H], bias [H].
    """

    gates = ("h",)
    equations = "h' = tanh(x W_h + h U_h + b_h)"
    onnx_operator = "RNN"
    onnx_gates = ("h",)
    onnx_attributes = {"activations": ["Tanh"]}

    def gate_arrays(self):
        weights = convert.get_weights(self)
        return _per_gate(self.gates, kernel=[weights["kernel"]],
                         recurrent_kernel=[weights["recurrent_kernel"]], bias=[weights["bias"]])

    def build(self, input_shape):
        d, h = int(input_shape[-1]), self.units
        self.kernel = self.add_weight(shape=(d, h), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(h, h), initializer="orthogonal", name="recurrent_kernel")
        self.bias = self.add_weight(shape=(h,), initializer="zeros", name="bias")

    def project_inputs(self, inputs):
        return tf.tensordot(inputs, self.kernel, 1) + self.bias

    def step(self, projected, states, weights, update_mask=None):
        (h,) = states
        new_h = tf.tanh(projected + tf.matmul(h, weights[0]))
        return new_h, (new_h,)


def _layer_norm(x, gamma, beta, epsilon):
    """Layer norm over the last axis of x [B, H], as tf.contrib.layers.layer_norm.

    Computed in float32 whatever x's dtype (epsilon 1e-12 underflows to 0 in float16) and
    returned in x's dtype.
    """
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    normed = (x - mean) * tf.math.rsqrt(variance + epsilon)
    return tf.cast(normed * tf.cast(gamma, tf.float32) + tf.cast(beta, tf.float32), dtype)


@register_cell("layer_norm_lstm")
class LayerNormLSTMCell(RecurrentCell):
    """LSTM with per-gate layer norm and recurrent dropout, as TF1 `LayerNormBasicLSTMCell`.

    z = x W + h U (no bias: the layer-norm shift replaces it); i, j, f, o = LN_gate(z_gate);
    g = tanh(j) * update_mask;  c' = LN_state(sigmoid(f + forget_bias) * c + sigmoid(i) * g);
    h' = tanh(c') * sigmoid(o). `update_mask` is the "recurrent dropout without memory loss"
    (Semeniuta et al.) keep mask on the candidate g, never on h.

    Weights: kernel [D, 4H], recurrent_kernel [H, 4H], gamma/beta [5, H] (rows i, j, f, o,
    state); epsilon 1e-12 like `tf.contrib.layers.layer_norm`.
    """

    state_names = ("c", "h")
    uses_update_dropout = True
    uses_forget_bias = True
    gates = ("i", "c", "f", "o")  # stored order [i, j, f, o]; no bias, a gamma/beta per gate
    equations = ("g = LN_g(x W_g + h U_g) with LN(z) = (z - mean(z)) / sqrt(var(z) + 1e-12) "
                 "* gamma_g + beta_g; c' = LN_state(sigmoid(f + forget_bias) * c + "
                 "sigmoid(i) * tanh(c_gate)); h' = tanh(c') * sigmoid(o)")
    # No onnx_operator: ONNX's LSTM has no per-gate layer normalisation.

    def __init__(self, units, forget_bias=1.0, norm_gain=1.0, norm_shift=0.0,
                 epsilon=1e-12, **kwargs):
        super().__init__(units, **kwargs)
        self.forget_bias = float(forget_bias)
        self.norm_gain = float(norm_gain)
        self.norm_shift = float(norm_shift)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        d, h = int(input_shape[-1]), self.units
        self.kernel = self.add_weight(shape=(d, 4 * h), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(h, 4 * h), initializer="orthogonal", name="recurrent_kernel")
        self.gamma = self.add_weight(
            shape=(5, h), initializer=keras.initializers.Constant(self.norm_gain), name="gamma")
        self.beta = self.add_weight(
            shape=(5, h), initializer=keras.initializers.Constant(self.norm_shift), name="beta")

    def project_inputs(self, inputs):
        return tf.tensordot(inputs, self.kernel, 1)

    def gate_arrays(self):
        weights = convert.get_weights(self)
        out = _per_gate(self.gates, kernel=_split(weights["kernel"], 4),
                        recurrent_kernel=_split(weights["recurrent_kernel"], 4),
                        gamma=list(weights["gamma"][:4]), beta=list(weights["beta"][:4]))
        out.update({"state/gamma": np.asarray(weights["gamma"][4], np.float32),
                    "state/beta": np.asarray(weights["beta"][4], np.float32)})
        return out

    def recurrent_weights(self):
        gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
        return ((tf.convert_to_tensor(self.recurrent_kernel),)
                + tuple(gamma[k] for k in range(5)) + tuple(beta[k] for k in range(5)))

    def step(self, projected, states, weights, update_mask=None):
        c, h = states
        recurrent_kernel, gamma, beta = weights[0], weights[1:6], weights[6:]
        z = projected + tf.matmul(h, recurrent_kernel)
        gates = [_layer_norm(g, gamma[k], beta[k], self.epsilon)
                 for k, g in enumerate(tf.split(z, 4, axis=-1))]
        i, j, f, o = gates
        g = tf.tanh(j)
        if update_mask is not None:
            g = g * update_mask
        new_c = tf.sigmoid(f + self.forget_bias) * c + tf.sigmoid(i) * g
        new_c = _layer_norm(new_c, gamma[4], beta[4], self.epsilon)
        new_h = tf.tanh(new_c) * tf.sigmoid(o)
        return new_h, (new_c, new_h)

    def get_config(self):
        config = super().get_config()
        config.update(forget_bias=self.forget_bias, norm_gain=self.norm_gain,
                      norm_shift=self.norm_shift, epsilon=self.epsilon)
        return config
