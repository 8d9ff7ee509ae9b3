"""The one length-aware time loop shared by every cell, layer and direction.

Built to export: a `tf.while_loop` that carries only tensors (the step counter, the states
and a preallocated [T, B, H] output buffer), reads step t with `tf.gather`, and writes step t
with `XlaDynamicUpdateSlice`, which the TFLite converter lowers to the builtin
DYNAMIC_UPDATE_SLICE (an in-place write; `tf.tensor_scatter_nd_update` also converts but
becomes SCATTER_ND + masking arithmetic over the whole buffer at every step). No
`TensorArray`, `tf.scan` or Keras RNN layer: with a dynamic batch those need Flex ops.

Speed: the input projection of all steps is one matmul before the loop, and the loop stops
at the batch's longest real length, not at the padded T.
"""

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla


@tf.custom_gradient
def _write_step(buffer, t, value):
    """buffer float32 [T, B, H] with row t replaced by value float32 [B, H].

    `XlaDynamicUpdateSlice` has no registered gradient, hence this one.
    """
    index = tf.stack([t, 0, 0])
    updated = xla.dynamic_update_slice(buffer, value[tf.newaxis], index)

    def grad(upstream):
        return (xla.dynamic_update_slice(upstream, tf.zeros_like(value)[tf.newaxis], index),
                None, tf.gather(upstream, t))

    return updated, grad


def recur(wrapper, inputs, lengths, masks=None, initial_states=None, parallel_iterations=32,
          return_sequences=True):
    """Runs a (dropout-wrapped) cell over time-major inputs, respecting lengths.

    For steps at or past a sequence's length the output is zero and the state is carried
    through unchanged, so the final state is the state after the last real step.

    Args:
      wrapper: a `models.rnn.dropout.DropoutWrapper` (built).
      inputs: float32 [T, B, D], time-major.
      lengths: int32 [B], each in [0, T].
      masks: `DropoutMasks` or None (no dropout).
      initial_states: tuple of float32 [B, H] or None (zeros).
      parallel_iterations: passed to `tf.while_loop`.
      return_sequences: bool; False skips the output buffer (outputs is None), which saves
        a write per step and its gradient when only the final state is used.
    Returns:
      (outputs float32 [T, B, H], zero from each length on and after output dropout,
       final_states tuple of float32 [B, H] in `wrapper.cell.state_names` order).
    """
    cell = wrapper.cell
    projected = wrapper.project_inputs(inputs, masks)  # [T, B, G], one matmul.
    time_steps, batch_size = tf.shape(inputs)[0], tf.shape(inputs)[1]
    if initial_states is None:
        initial_states = cell.zero_state(batch_size, projected.dtype)
    num_steps = tf.minimum(tf.reduce_max(lengths), time_steps)
    weights = cell.recurrent_weights()

    def body(t, states, *outputs):
        output, new_states = wrapper.step(t, tf.gather(projected, t), states, weights, masks)
        valid = tf.expand_dims(t < lengths, 1)  # [B, 1]
        new_states = tuple(tf.where(valid, new, old) for new, old in zip(new_states, states))
        if not return_sequences:
            return (t + 1, new_states)
        output = tf.where(valid, output, tf.zeros_like(output))
        return t + 1, new_states, _write_step(outputs[0], t, output)

    loop_vars = (tf.constant(0), tuple(initial_states))
    if return_sequences:
        loop_vars += (tf.zeros(tf.stack([time_steps, batch_size, cell.output_size]), projected.dtype),)
    result = tf.while_loop(
        lambda t, *_: t < num_steps, body, loop_vars,
        parallel_iterations=parallel_iterations, maximum_iterations=time_steps)
    if not return_sequences:
        return None, result[1]
    return wrapper.drop_outputs(result[2], masks), result[1]
