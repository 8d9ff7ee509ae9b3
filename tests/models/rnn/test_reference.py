"""Our encoder against real TF1 (`DropoutWrapper` + `LSTMCell` (peepholes too) / `GRUCell` +
`dynamic_rnn`).

TF1 runs in a subprocess (graph mode, `TF_USE_LEGACY_KERAS=1`). Both sides get the same
weights (converted to the TF1 fused layout) and the same variational masks (TF1's noise
tensors are replaced; ours are injected), variable lengths and all keep probabilities < 1.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from models.rnn import DropoutMasks, SequenceEncoder, convert

pytestmark = pytest.mark.slow  # the reference comes from TF1 in a subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP = {"input_keep_prob": 0.8, "state_keep_prob": 0.7, "output_keep_prob": 0.75}
CASES = [
    ("lstm", 1, False),
    ("lstm", 2, False),
    ("gru", 2, False),
    ("lstm", 2, True),
    ("gru", 1, True),
    ("peephole_lstm", 1, False),
    ("peephole_lstm", 2, True),
]
TOLERANCE = 1e-5
PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")


def _mask_and_noise(rng, size, keep_prob):
    """A [1, size] 0/1 mask, TF1 noise giving it (floor(keep + noise)), our scaled mask."""
    keep = (rng.random([1, size]) < keep_prob).astype(np.float32)
    keep[0, 0], keep[0, -1] = 0.0, 1.0  # at least one dropped and one kept unit
    noise = np.where(keep > 0, 1.0 - 1e-6, 0.0).astype(np.float32)
    return keep / keep_prob, noise


def _build_case(cell, num_layers, bidirectional, seed):
    rng = np.random.default_rng(seed)
    b, t, d, h = 4, 7, 5, 6
    x = rng.normal(size=[b, t, d]).astype(np.float32)
    lengths = np.array([7, 3, 1, 5], np.int32)
    encoder = SequenceEncoder(cell, units=h, num_layers=num_layers, bidirectional=bidirectional,
                              forget_bias=0.7, **KEEP)
    encoder(x, lengths)  # build
    case = {"x": x, "lengths": lengths}
    masks = []
    size = d
    for layer, row in enumerate(encoder.wrappers):
        mask_row = []
        for direction, wrapper in enumerate(row):
            weights = convert.get_weights(wrapper.cell)
            # Random biases too, so a bias conversion slip cannot hide behind zeros.
            weights["bias"] = rng.normal(size=weights["bias"].shape).astype(np.float32)
            convert.set_weights(wrapper.cell, weights)
            if cell == "peephole_lstm":  # random peepholes too, and TF1's names for them
                for name in PEEPHOLES:
                    weights[name] = rng.normal(size=weights[name].shape).astype(np.float32)
                convert.set_weights(wrapper.cell, weights)
                tf1 = [*convert.lstm_to_tf1(weights), *(weights[name] for name in PEEPHOLES)]
            else:
                tf1 = (convert.lstm_to_tf1(weights) if cell == "lstm" else convert.gru_to_tf1(weights))
            for k, w in enumerate(tf1):
                case[f"w_{layer}_{direction}_{k}"] = w
            m_in, n_in = _mask_and_noise(rng, size, KEEP["input_keep_prob"])
            m_st, n_st = _mask_and_noise(rng, h, KEEP["state_keep_prob"])
            m_out, n_out = _mask_and_noise(rng, h, KEEP["output_keep_prob"])
            case[f"noise_{layer}_{direction}_input"] = n_in
            case[f"noise_{layer}_{direction}_state"] = n_st
            case[f"noise_{layer}_{direction}_output"] = n_out
            state = (None, m_st) if cell != "gru" else (m_st,)
            mask_row.append(DropoutMasks(input=tf.constant(m_in), state=tuple(
                None if m is None else tf.constant(m) for m in state), output=tf.constant(m_out)))
        masks.append(mask_row)
        size = h * (2 if bidirectional else 1)
    case["meta"] = json.dumps(dict(cell=cell, units=h, num_layers=num_layers,
                                   bidirectional=bidirectional, forget_bias=0.7, **KEEP))
    return encoder, masks, case


@pytest.fixture(scope="module")
def tf1_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tf1")
    built = []
    for n, (cell, layers, bidi) in enumerate(CASES):
        encoder, masks, case = _build_case(cell, layers, bidi, seed=n)
        np.savez(folder / f"case_{n}.npz", **case)
        built.append((encoder, masks, case))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "tf1_reference.py"), str(folder)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [(b, dict(np.load(folder / f"out_{n}.npz"))) for n, b in enumerate(built)]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c}-L{l}-{'bi' if b else 'uni'}"
                                                           for c, l, b in CASES])
def test_matches_tf1_dropout_wrapper(tf1_results, index):
    (encoder, masks, case), expected = tf1_results[index]
    outputs, final, states = encoder(case["x"], case["lengths"], training=True, masks=masks,
                                     return_state=True)
    diffs = {"outputs": np.abs(outputs.numpy() - expected["outputs"]).max()}
    for layer, row in enumerate(states):
        for direction, state in enumerate(row):
            for name, value in state.items():
                key = f"{name}_{layer}_{direction}"
                diffs[key] = np.abs(value.numpy() - expected[key]).max()
    top = len(states) - 1
    want_final = np.concatenate([expected[f"h_{top}_{d}"] for d in range(len(states[-1]))], -1)
    diffs["final"] = np.abs(final.numpy() - want_final).max()
    print(CASES[index], {k: float(v) for k, v in diffs.items()})
    assert max(diffs.values()) < TOLERANCE, diffs
    # The case must exercise dropout: without masks the result differs.
    plain, _ = encoder(case["x"], case["lengths"])
    assert np.abs(plain.numpy() - expected["outputs"]).max() > 1e-3
