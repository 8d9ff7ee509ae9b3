"""`SequenceEncoder`: stacked, optionally bidirectional, dropout-wrapped recurrent encoder.

The TF1 picture it reproduces: each layer is `DropoutWrapper(cell)`, layers stacked as
`MultiRNNCell([...])`, run by `dynamic_rnn(..., sequence_length=lengths)`. With
`bidirectional=True` every layer has a forward and a backward wrapper and the next layer reads
their concatenated outputs (TF1 `stack_bidirectional_dynamic_rnn`); the backward direction
reads each sequence reversed within its own length (`tf.reverse_sequence`) and its outputs are
reversed back.
"""

import keras
import tensorflow as tf

from models.rnn import cells as cells_lib
from models.rnn.dropout import DropoutWrapper
from models.rnn.recurrence import recur


class SequenceEncoder(keras.layers.Layer):
    """Encodes padded sequences with their lengths.

    Args:
      cell: name in `models.rnn.cells.CELLS`: "lstm", "gru", "rnn", "layer_norm_lstm",
        "peephole_lstm".
      units: int H, units per direction.
      num_layers: int, stacked layers.
      bidirectional: bool, add a backward direction to every layer.
      input_keep_prob, state_keep_prob, output_keep_prob: TF1 DropoutWrapper keep
        probabilities (1.0 = off), applied to every layer.
      variational_recurrent: bool, one mask per call for all steps (else fresh every step).
      mask_per_example: bool, variational masks per example [B, size] rather than shared by
        the batch [1, size] (TF1).
      update_keep_prob: keep probability on the candidate update ("layer_norm_lstm" only).
      forget_bias: float added to the forget gate (cells with `uses_forget_bias`: the LSTMs).
      seed: int or None, seeds the layer's `keras.random.SeedGenerator`, used when training
        without a per-call seed (None: a non-deterministic start). Its state is a variable of
        the layer, so checkpoints carry it.
      parallel_iterations: int, for the time loop.

    Call arguments:
      inputs: float [B, T, D] (cast to the layer's compute dtype: float32, or float16 /
        bfloat16 under a mixed-precision dtype policy; outputs come in that dtype).
      lengths: int32 [B], real lengths (clipped to [0, T]).
      training: Python bool; dropout only when True.
      seed: optional int32/int64 [2], stateless seed for this call's masks (the trainer's
        checkpointed `tf.random.Generator` can supply it: `gen.make_seeds(1)[:, 0]`), or
        [B, 2], one per example (each example's masks as if it were alone: `draw_masks`).
      masks: optional list (per layer) of lists (per direction) of `DropoutMasks`, used
        instead of drawing (tests, reference checks); applied whatever `training` is.
      return_state: bool, also return the final states of every layer.
      return_sequences: bool; False skips collecting the top layer's per-step outputs
        (outputs is None): faster training when only `final` is pooled.

    Returns:
      outputs: float32 [B, T, units * directions], zero at and past each length (None with
        return_sequences=False).
      final: float32 [B, units * directions], top layer's final "h" state (forward, then
        backward after it read the whole sequence) — the `dynamic_rnn` final state, so state
        dropout is in it when training, as in TF1.
      states (only with return_state): list per layer of list per direction of dicts
        {state_name: float32 [B, units]}.
    """

    def __init__(self, cell="lstm", units=64, num_layers=1, bidirectional=False,
                 input_keep_prob=1.0, state_keep_prob=1.0, output_keep_prob=1.0,
                 variational_recurrent=True, mask_per_example=False, update_keep_prob=1.0,
                 forget_bias=1.0, seed=None, parallel_iterations=32, **kwargs):
        super().__init__(**kwargs)
        if cell not in cells_lib.CELLS:
            raise ValueError(f"Unknown cell {cell!r}; expected one of {sorted(cells_lib.CELLS)}.")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; received {num_layers}.")
        self.cell_name = cell
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.input_keep_prob = float(input_keep_prob)
        self.state_keep_prob = float(state_keep_prob)
        self.output_keep_prob = float(output_keep_prob)
        self.variational_recurrent = bool(variational_recurrent)
        self.mask_per_example = bool(mask_per_example)
        self.update_keep_prob = float(update_keep_prob)
        self.forget_bias = float(forget_bias)
        self.seed = seed
        self.parallel_iterations = int(parallel_iterations)
        self.directions = 2 if self.bidirectional else 1

        cell_kwargs = {"units": self.units}
        if cells_lib.CELLS[cell].uses_forget_bias:
            cell_kwargs["forget_bias"] = self.forget_bias
        self.wrappers = []
        for layer in range(self.num_layers):
            row = []
            for direction in range(self.directions):
                suffix = f"l{layer}_{'bw' if direction else 'fw'}"
                row.append(DropoutWrapper(
                    cells_lib.get_cell(cell, name=f"{cell}_{suffix}", **cell_kwargs),
                    input_keep_prob=self.input_keep_prob,
                    state_keep_prob=self.state_keep_prob,
                    output_keep_prob=self.output_keep_prob,
                    update_keep_prob=self.update_keep_prob,
                    variational_recurrent=self.variational_recurrent,
                    mask_per_example=self.mask_per_example,
                    seed=layer * self.directions + direction,
                    name=f"dropout_{suffix}"))
                # An attribute too: Keras 3 does not show layers kept in nested lists to
                # tf.train.Checkpoint, which would then save no weight at all.
                setattr(self, f"dropout_{suffix}", row[-1])
            self.wrappers.append(row)
        self.seed_generator = keras.random.SeedGenerator(seed, name="mask_seed")
        # The mask seed's state as a checkpointed variable, so resume draws the same masks.
        self.mask_seed_state = self.seed_generator.state

    @property
    def output_size(self):
        """Last dimension of `outputs` and `final`: units * directions."""
        return self.units * self.directions

    def build(self, inputs_shape, lengths_shape=None):
        size = int(inputs_shape[-1])
        for row in self.wrappers:
            for wrapper in row:
                wrapper.build((None, size))
            size = self.output_size
        self.built = True

    def draw_masks(self, seed, batch_size, time_steps):
        """Masks every wrapper would use for a call with this seed (list per layer of list
        per direction of `DropoutMasks`).

        seed: int32/int64 [2] for the whole call, or [B, 2], one per example: then example b
          gets the masks it would draw alone (a batch of 1) with seed[b], whatever batch it is
          in, wherever in it, and (masks are drawn step by step from the start) however much
          padding the batch adds. Masks are then [B, size] or, per step, [T, B, size].
        """
        seed = tf.convert_to_tensor(seed)
        if seed.shape.rank == 2:
            return self._draw_masks_per_example(seed, time_steps)
        return [[w.draw_masks(seed, batch_size, time_steps) for w in row]
                for row in self.wrappers]

    def _draw_masks_per_example(self, seeds, time_steps):
        """`draw_masks` for seeds int32/int64 [B, 2]: one batch-of-1 draw per example, stacked."""
        # The structure (None where a keep probability is 1) and ranks of one draw; its ops are
        # unused, so a traced graph prunes them.
        structure = self.draw_masks(tf.zeros([2], seeds.dtype), 1, time_steps)
        template = tf.nest.flatten(structure)

        def alone(seed):
            return [m for m in tf.nest.flatten(self.draw_masks(seed, 1, time_steps)) if m is not None]

        # A stateless draw takes one seed: vectorising over seeds would fall back to this loop.
        # A leading spare row (dropped below) lets an empty batch stack per-step masks, whose
        # time dimension is unknown when traced.
        padded = tf.concat([tf.zeros([1, 2], seeds.dtype), seeds], 0)
        drawn = iter(tf.map_fn(alone, padded, fn_output_signature=[
            tf.TensorSpec(None, tf.float32) for m in template if m is not None]))
        stacked = []
        for m in template:
            if m is None:
                stacked.append(None)
            elif m.shape.rank == 2:  # [1 + B, 1, size] -> [B, size]
                stacked.append(tf.squeeze(next(drawn), 1)[1:])
            else:  # per step: [1 + B, T, 1, size] -> [T, B, size]
                stacked.append(tf.transpose(tf.squeeze(next(drawn), 2)[1:], [1, 0, 2]))
        return tf.nest.pack_sequence_as(structure, stacked)

    def call(self, inputs, lengths, training=False, seed=None, masks=None, return_state=False,
             return_sequences=True):
        # The layer's compute dtype: float32, or float16/bfloat16 under a mixed-precision
        # policy (variables stay float32 and are read cast, by Keras' autocast scope).
        inputs = tf.cast(inputs, self.compute_dtype)
        time_steps, batch_size = tf.shape(inputs)[1], tf.shape(inputs)[0]
        lengths = tf.clip_by_value(tf.cast(lengths, tf.int32), 0, time_steps)
        x = tf.transpose(inputs, [1, 0, 2])  # [T, B, D]
        # Padding may hold anything (NaN included): zero it so it cannot reach a gradient.
        valid = tf.expand_dims(tf.transpose(tf.sequence_mask(lengths, time_steps)), -1)
        x = tf.where(valid, x, tf.zeros_like(x))

        if masks is None and training and self.wrappers[0][0].has_dropout:
            if seed is None:
                seed = self.seed_generator.next()
            masks = self.draw_masks(seed, batch_size, time_steps)

        states = []
        reverse = lambda v: tf.reverse_sequence(v, lengths, seq_axis=0, batch_axis=1)
        for layer, row in enumerate(self.wrappers):
            outputs, layer_states = [], []
            sequences = return_sequences or layer < self.num_layers - 1
            for direction, wrapper in enumerate(row):
                m = None if masks is None else masks[layer][direction]
                out, final = recur(wrapper, x if direction == 0 else reverse(x), lengths, m,
                                   parallel_iterations=self.parallel_iterations,
                                   return_sequences=sequences)
                if direction == 1 and sequences:
                    out = reverse(out)
                outputs.append(out)
                layer_states.append(dict(zip(wrapper.cell.state_names, final)))
            if sequences:
                x = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=-1)
            states.append(layer_states)

        outputs = tf.transpose(x, [1, 0, 2]) if return_sequences else None
        final = tf.concat([s["h"] for s in states[-1]], axis=-1)
        if return_state:
            return outputs, final, states
        return outputs, final

    def compute_output_spec(self, inputs, lengths, training=False, seed=None, masks=None,
                            return_state=False, return_sequences=True):
        b, t = inputs.shape[0], inputs.shape[1]
        out = (keras.KerasTensor((b, t, self.output_size)),
               keras.KerasTensor((b, self.output_size)))
        if return_state:
            raise NotImplementedError("return_state is for eager/tf.function use.")
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            cell=self.cell_name, units=self.units, num_layers=self.num_layers,
            bidirectional=self.bidirectional, input_keep_prob=self.input_keep_prob,
            state_keep_prob=self.state_keep_prob, output_keep_prob=self.output_keep_prob,
            variational_recurrent=self.variational_recurrent,
            mask_per_example=self.mask_per_example, update_keep_prob=self.update_keep_prob,
            forget_bias=self.forget_bias, seed=self.seed,
            parallel_iterations=self.parallel_iterations)
        return config
