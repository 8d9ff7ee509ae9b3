"""Dropout around a recurrent cell, with the semantics of TF1 `nn.rnn_cell.DropoutWrapper`.

Keep probabilities (not rates): a kept unit is scaled by 1 / keep_prob, a dropped one is 0,
and the mask is `floor(keep_prob + U[0, 1))`, TF1's formula. A keep probability of 1.0 draws
no mask and adds no op.

- input dropout acts on the cell input, output dropout on the cell output (neither feeds the
  recurrence, so both are applied to all time steps at once, outside the loop);
- state dropout acts on the outgoing state of every step (so it is what the next step and the
  final state see); `dropout_state_filter_visitor(name) -> bool` picks the state components,
  by default every component except the LSTM memory "c" (only "h" is dropped);
- update dropout (cells with `uses_update_dropout`, i.e. "layer_norm_lstm") acts on the
  candidate g, as TF1 `LayerNormBasicLSTMCell(dropout_keep_prob=...)`.

`variational_recurrent=True`: one mask per call, the same at every time step. TF1 shared it
across the batch (noise shape [1, size]), which is the default here; `mask_per_example=True`
draws one per example ([B, size], as Gal & Ghahramani and Keras do).
`variational_recurrent=False`: a fresh mask per step and example ([T, B, size]).

Masks are never drawn in `__init__` (the TF1 trap: a mask created once and reused for the
whole run). `draw_masks` takes a stateless seed, int32/int64 [2], from the caller on every
call, so the caller's checkpointed RNG state decides them and resume is exact; masks can also
be built by hand (`DropoutMasks`) and injected.
"""

from typing import NamedTuple, Optional, Tuple

import keras
import tensorflow as tf

_SALT_INPUT, _SALT_OUTPUT, _SALT_UPDATE, _SALT_STATE = 1, 2, 3, 16


def default_state_filter(state_name):
    """TF1 default: never drop the LSTM memory `c`; drop every other state component."""
    return state_name != "c"


class DropoutMasks(NamedTuple):
    """Scaled keep masks (values 0 or 1/keep_prob, float32) for one cell over one call.

    Each entry is None (no dropout) or a tensor of shape [1, size] (variational, shared by the
    batch), [B, size] (variational, per example) or [T, B, size] (fresh every step).
    `state` holds one entry per state component, in the cell's `state_names` order.
    """

    input: Optional[tf.Tensor] = None
    state: Tuple[Optional[tf.Tensor], ...] = ()
    output: Optional[tf.Tensor] = None
    update: Optional[tf.Tensor] = None


def keep_mask(keep_prob, shape, seed):
    """Scaled Bernoulli(keep_prob) mask, float32 of `shape`: floor(keep + U) / keep.

    seed: int32/int64 [2], stateless seed.
    """
    # Same seed -> same mask within one execution mode. XLA's Philox stream differs from the
    # TF CPU kernel's (even for StatelessRandomUniformV2 with explicit key/counter), so a
    # jit-compiled step draws other (equally valid) masks than the same step without XLA.
    noise = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32, alg="philox")
    return tf.floor(keep_prob + noise) / keep_prob


def _mask_at(mask, t):
    """Mask for time step t: a per-step mask [T, B, size] is read at t, others are constant."""
    if mask is None or mask.shape.rank == 2:
        return mask
    return tf.gather(mask, t)


def _apply(values, mask):
    """values * mask, the (float32) mask cast to the values' dtype (mixed precision)."""
    return values * tf.cast(mask, values.dtype)


class DropoutWrapper(keras.layers.Layer):
    """Wraps a `RecurrentCell` with input, state, output (and update) dropout.

    Args:
      cell: a `models.rnn.cells.RecurrentCell`.
      input_keep_prob, state_keep_prob, output_keep_prob: floats in (0, 1].
      update_keep_prob: float in (0, 1], keep probability of the candidate update; only for
        cells with `uses_update_dropout` (TF1 `LayerNormBasicLSTMCell.dropout_keep_prob`).
      variational_recurrent: bool, same mask at every step of one call.
      mask_per_example: bool, variational masks differ across the batch ([B, size]) instead
        of being shared by it ([1, size], TF1).
      seed: int, a salt folded into every per-call seed so that wrappers sharing a per-call
        seed (the layers and directions of one encoder) draw independent masks.
      dropout_state_filter_visitor: callable(state_name) -> bool, which state components
        state dropout touches (default: all but "c"). Not serialized by `get_config`.
    """

    def __init__(self, cell, input_keep_prob=1.0, state_keep_prob=1.0, output_keep_prob=1.0,
                 update_keep_prob=1.0, variational_recurrent=True, mask_per_example=False,
                 seed=0, dropout_state_filter_visitor=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in [("input_keep_prob", input_keep_prob),
                            ("state_keep_prob", state_keep_prob),
                            ("output_keep_prob", output_keep_prob),
                            ("update_keep_prob", update_keep_prob)]:
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]; received {value}.")
        if float(update_keep_prob) < 1.0 and not cell.uses_update_dropout:
            raise ValueError(
                f"update_keep_prob < 1 needs a cell with update dropout (layer_norm_lstm); "
                f"received cell {type(cell).__name__}.")
        self.cell = cell
        self.input_keep_prob = float(input_keep_prob)
        self.state_keep_prob = float(state_keep_prob)
        self.output_keep_prob = float(output_keep_prob)
        self.update_keep_prob = float(update_keep_prob)
        self.variational_recurrent = bool(variational_recurrent)
        self.mask_per_example = bool(mask_per_example)
        self.seed = int(seed)
        self.dropout_state_filter_visitor = (
            dropout_state_filter_visitor or default_state_filter)

    def build(self, input_shape):
        self.cell.build(input_shape)
        self.input_size = int(input_shape[-1])

    @property
    def has_dropout(self):
        return min(self.input_keep_prob, self.state_keep_prob, self.output_keep_prob,
                   self.update_keep_prob) < 1.0

    def _shape(self, size, batch_size, time_steps):
        if not self.variational_recurrent:
            return tf.stack([time_steps, batch_size, size])
        if self.mask_per_example:
            return tf.stack([batch_size, size])
        return tf.constant([1, size])

    def draw_masks(self, seed, batch_size, time_steps):
        """Draws this call's masks.

        Args:
          seed: int32/int64 [2], per-call stateless seed (the wrapper folds in its own salt).
          batch_size, time_steps: int32 scalars B and T.
        Returns:
          `DropoutMasks`; entries are None where the keep probability is 1.
        """
        seed = tf.random.experimental.stateless_fold_in(seed, self.seed, alg="philox")

        def draw(keep_prob, size, salt):
            if keep_prob >= 1.0:
                return None
            sub = tf.random.experimental.stateless_fold_in(seed, salt, alg="philox")
            return keep_mask(keep_prob, self._shape(size, batch_size, time_steps), sub)

        h = self.cell.units
        state = tuple(
            draw(self.state_keep_prob, h, _SALT_STATE + k)
            if self.dropout_state_filter_visitor(name) else None
            for k, name in enumerate(self.cell.state_names))
        return DropoutMasks(
            input=draw(self.input_keep_prob, self.input_size, _SALT_INPUT),
            state=state,
            output=draw(self.output_keep_prob, h, _SALT_OUTPUT),
            update=draw(self.update_keep_prob, h, _SALT_UPDATE))

    # The three pieces the recurrence calls. `masks` is a DropoutMasks or None (no dropout).

    def project_inputs(self, inputs, masks=None):
        """inputs float32 [T, B, D] -> input-dropped cell projection float32 [T, B, G]."""
        if masks is not None and masks.input is not None:
            inputs = _apply(inputs, masks.input)  # [1|B, D] broadcasts over T; [T, B, D] matches.
        return self.cell.project_inputs(inputs)

    def step(self, t, projected, states, weights, masks=None):
        """Cell step at time t (int32 scalar) followed by state dropout.

        projected: float32 [B, G]; states: tuple of float32 [B, H];
        weights: `cell.recurrent_weights()`.
        Returns (output float32 [B, H] before output dropout, new_states tuple).
        """
        update_mask = None if masks is None else _mask_at(masks.update, t)
        if update_mask is not None:
            update_mask = tf.cast(update_mask, projected.dtype)
        output, new_states = self.cell.step(projected, states, weights, update_mask=update_mask)
        if masks is not None and masks.state:
            new_states = tuple(
                s if m is None else _apply(s, _mask_at(m, t)) for s, m in zip(new_states, masks.state))
        return output, new_states

    def drop_outputs(self, outputs, masks=None):
        """outputs float32 [T, B, H] -> output-dropped outputs (padding stays zero)."""
        if masks is not None and masks.output is not None:
            outputs = _apply(outputs, masks.output)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            cell=keras.saving.serialize_keras_object(self.cell),
            input_keep_prob=self.input_keep_prob, state_keep_prob=self.state_keep_prob,
            output_keep_prob=self.output_keep_prob, update_keep_prob=self.update_keep_prob,
            variational_recurrent=self.variational_recurrent,
            mask_per_example=self.mask_per_example, seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)
