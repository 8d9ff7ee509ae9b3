"""Runs cases through real TF1 RNN code (tf_keras' compat.v1 cells) and writes the results.

Usage: TF_USE_LEGACY_KERAS=1 python tf1_reference.py CASE_DIR
For every CASE_DIR/case_*.npz writes CASE_DIR/out_*.npz. Graph mode, `dynamic_rnn` with
`sequence_length`, `DropoutWrapper(variational_recurrent=True)` around `LSTMCell` (`use_peepholes` for
"peephole_lstm") / `GRUCell`,
stacked with `MultiRNNCell` (or, bidirectional, layer by layer with
`bidirectional_dynamic_rnn` and concatenated outputs). The wrapper's noise tensors are replaced
by the case's noise, so TF1 uses exactly the masks the test chose.

Case keys: meta (JSON), x [B, T, D], lengths [B], w_{layer}_{dir}_{k} (TF1 weights, in the
order of `convert.*_to_tf1`), noise_{layer}_{dir}_{input|state|output} ([1, size]).
Output keys: outputs [B, T, H * dirs], c_{layer}_{dir} / h_{layer}_{dir} [B, H].
"""

import glob
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1
rnn_cell = v1.nn.rnn_cell
LSTMS = ("lstm", "peephole_lstm")


def make_cell(case, meta, layer, direction, input_size):
    h = meta["units"]
    if meta["cell"] in LSTMS:
        cell = rnn_cell.LSTMCell(h, forget_bias=meta["forget_bias"],
                                 use_peepholes=meta["cell"] == "peephole_lstm")
    else:
        cell = rnn_cell.GRUCell(h)
    wrapper = rnn_cell.DropoutWrapper(
        cell, input_keep_prob=meta["input_keep_prob"], state_keep_prob=meta["state_keep_prob"],
        output_keep_prob=meta["output_keep_prob"], variational_recurrent=True,
        input_size=input_size, dtype=tf.float32)

    def noise(kind):
        return tf.constant(case[f"noise_{layer}_{direction}_{kind}"])

    wrapper._recurrent_input_noise = noise("input")
    if meta["cell"] in LSTMS:
        wrapper._recurrent_state_noise = rnn_cell.LSTMStateTuple(
            tf.ones([1, h]), noise("state"))
    else:
        wrapper._recurrent_state_noise = noise("state")
    wrapper._recurrent_output_noise = noise("output")
    return wrapper


def weight_order(meta):
    if meta["cell"] == "peephole_lstm":
        return ["kernel", "bias", "w_i_diag", "w_f_diag", "w_o_diag"]
    if meta["cell"] == "lstm":
        return ["kernel", "bias"]
    return ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"]


def run_case(path):
    case = dict(np.load(path))
    meta = json.loads(str(case["meta"]))
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(case["x"])
        lengths = tf.constant(case["lengths"])
        dirs = 2 if meta["bidirectional"] else 1
        wrappers = {}
        finals = {}
        size = case["x"].shape[-1]
        if dirs == 1:
            cells = []
            for layer in range(meta["num_layers"]):
                wrappers[(layer, 0)] = make_cell(case, meta, layer, 0, size)
                cells.append(wrappers[(layer, 0)])
                size = meta["units"]
            outputs, state = v1.nn.dynamic_rnn(
                rnn_cell.MultiRNNCell(cells), x, sequence_length=lengths, dtype=tf.float32)
            for layer, s in enumerate(state):
                finals[(layer, 0)] = s
        else:
            outputs = x
            for layer in range(meta["num_layers"]):
                fw = wrappers[(layer, 0)] = make_cell(case, meta, layer, 0, size)
                bw = wrappers[(layer, 1)] = make_cell(case, meta, layer, 1, size)
                with v1.variable_scope(f"layer_{layer}"):
                    (out_fw, out_bw), (s_fw, s_bw) = v1.nn.bidirectional_dynamic_rnn(
                        fw, bw, outputs, sequence_length=lengths, dtype=tf.float32)
                outputs = tf.concat([out_fw, out_bw], -1)
                finals[(layer, 0)], finals[(layer, 1)] = s_fw, s_bw
                size = 2 * meta["units"]
        fetch = {"outputs": outputs}
        for (layer, d), s in finals.items():
            if meta["cell"] in LSTMS:
                fetch[f"c_{layer}_{d}"], fetch[f"h_{layer}_{d}"] = s.c, s.h
            else:
                fetch[f"h_{layer}_{d}"] = s
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for (layer, d), wrapper in wrappers.items():
                by_name = {v.name.split(":")[0]: v for v in wrapper.cell.weights}
                for k, short in enumerate(weight_order(meta)):
                    var = [v for n, v in by_name.items() if n.endswith(short)][0]
                    var.load(case[f"w_{layer}_{d}_{k}"], sess)
            result = sess.run(fetch)
    np.savez(path.replace("case_", "out_"), **result)


if __name__ == "__main__":
    v1.disable_eager_execution()
    for case_path in sorted(glob.glob(os.path.join(sys.argv[1], "case_*.npz"))):
        run_case(case_path)
