"""Every weight as plain arrays (`weights.npz`) plus `weights.json` saying what each one is.

For people who run the recurrence in another runtime. Recurrent weights are split per gate:
`encoder/l{layer}_{fw|bw}/{gate}/{kernel|recurrent_kernel|bias}` with kernel [D, H] (D: the
layer's input width), recurrent_kernel [H, H], bias [H]; the manifest lists the gates in the
order Keras (and cuDNN-style fused kernels) concatenate them (`gates`), the step equations
(`equations`), whether the forget bias is already in f's bias (`forget_bias_in_bias`) and
ONNX's operator for the cell (`onnx`: operator, its gate order, attributes; null when it has
none). Each cell class in `models/rnn/cells.py` declares these, and its docstring gives its
gate math and the arrays beyond kernel, recurrent_kernel and bias (layer_norm_lstm: a
gamma/beta per gate and `state/gamma`, `state/beta`, no bias; peephole_lstm: `{i,f,o}/peephole`).

Around the recurrence: dense features are normalised with `input/feature_mean`,
`input/feature_std` (token ids are looked up in `input/embedding` [V, E], row 0 = padding);
the backward direction reads each sequence reversed within its length; a layer's output is
[fw, bw] concatenated; states stop updating past a sequence's length. Then the pooling
(`pooling/...` for attention) and the head `head/kernel` [H', C'], `head/bias` [C'].
Dropout is training-only and absent here.

With a convolutional front end (`frontend` in the manifest, one entry per layer, in order):
after normalisation (and, with `sequence_norm`, per-sequence z-normalisation over real steps,
variance + 1e-6), each layer zeroes steps past the length, pads `left_padding` zeros on the
left, and computes output j = ReLU(LN(sum_k x[j * stride + k] W[k] + bias)) with LN over
channels (epsilon 1e-5, `gamma`, `beta`); the length becomes ceil(length / stride). The
recurrence reads the last layer's outputs; with `frontend_branch` their mean over real steps is
concatenated after the pooled recurrence outputs before the head.

With random-convolution features (`random_features` in the manifest, MiniROCKET-style): the
normalised input x [T, D] (zeros past the length) is convolved, for each dilation d_i, with
`random_features/kernels`[i] [9, D, 84] reading x[t + (k - 4) * d_i] (zeros outside 0..T-1)
at t = 0, s, 2s, ... (s = `position_stride`); feature (i, kernel j, bias b) = the fraction of
those positions inside the length (ceil(length / s) of them) where that output exceeds
`random_features/biases`[i, j, b]; the features, flattened in (i, j, b) order, are standardised
with `random_features/feature_mean` and `feature_std`, multiplied by `scale`, and concatenated
after the pooled vector (and the front-end branch) before the head.

With a hashed n-gram bag (`ngram_bag` in the manifest, token inputs): for every n in 1..`orders`
and every n-gram of token ids w_0..w_{n-1} wholly inside the sequence, h_0 = 1,
h_j = (h_{j-1} * `prime` + w_{j-1} + 1) mod `buckets`; the bag is the mean of the rows
`ngram_bag/table`[h_n] over all those n-grams (zeros when there are none), layer-normalised
over its features ((x - mean) / sqrt(variance + `epsilon`) * `ngram_bag/gamma` +
`ngram_bag/beta`), concatenated last before the head.
"""

from __future__ import annotations

import io
import math
import json
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from models import ngram_bag
from models.random_conv import REFERENCE_WIDTH

WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "weights.json"

def weight_arrays(model) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """(every weight of `model` by name, the manifest that says what each one is): what
    `export_weights` writes, and what the ONNX graph (`export/onnx_graph.py`) is built from."""
    config = model.model_config
    arrays: Dict[str, np.ndarray] = {}
    layers = []
    for layer, row in enumerate(model.encoder.wrappers):
        for direction, wrapper in enumerate(row):
            prefix = f"encoder/l{layer}_{'bw' if direction else 'fw'}"
            cell = wrapper.cell.gate_arrays()
            arrays.update({f"{prefix}/{key}": value for key, value in cell.items()})
            layers.append({"layer": layer, "direction": "backward" if direction else "forward",
                           "prefix": prefix, "input_size": int(wrapper.input_size),
                           "arrays": sorted(f"{prefix}/{key}" for key in cell)})
    if model.embedding is not None:
        arrays["input/embedding"] = np.asarray(model.embedding.embeddings.numpy(), np.float32)
    elif config.feature_mean:
        arrays["input/feature_mean"] = np.asarray(config.feature_mean, np.float32)
        arrays["input/feature_std"] = np.asarray(config.feature_std or [1.0] * config.feature_dim,
                                                 np.float32)
    frontend = []
    if model.frontend is not None:
        for index, (conv, norm) in enumerate(zip(model.frontend.convs, model.frontend.norms)):
            prefix = f"frontend/conv{index}"
            arrays[f"{prefix}/kernel"] = np.asarray(conv.kernel.numpy(), np.float32)  # [k, D, F]
            arrays[f"{prefix}/bias"] = np.asarray(conv.bias.numpy(), np.float32)
            arrays[f"{prefix}/gamma"] = np.asarray(norm.gamma.numpy(), np.float32)
            arrays[f"{prefix}/beta"] = np.asarray(norm.beta.numpy(), np.float32)
            frontend.append({"prefix": prefix, "stride": model.frontend.strides[index],
                             "kernel_size": model.frontend.kernel_size,
                             "left_padding": (model.frontend.kernel_size - 1) // 2})
    random_features = None
    if model.random_features is not None:
        layer = model.random_features
        for name in ("kernels", "biases", "feature_mean", "feature_std"):
            arrays[f"random_features/{name}"] = np.asarray(getattr(layer, name).numpy(), np.float32)
        random_features = {"dilations": list(layer.dilations), "kernel_length": 9,
                           "position_stride": layer.position_stride,
                           "biases_per_kernel": layer.per_kernel, "size": layer.output_size,
                           "scale": math.sqrt(REFERENCE_WIDTH / layer.output_size)}
    bag = None
    if model.ngram_bag is not None:
        layer = model.ngram_bag
        arrays["ngram_bag/table"] = np.asarray(layer.table.numpy(), np.float32)
        arrays["ngram_bag/gamma"] = np.asarray(layer.norm.gamma.numpy(), np.float32)
        arrays["ngram_bag/beta"] = np.asarray(layer.norm.beta.numpy(), np.float32)
        bag = {"orders": layer.orders, "buckets": layer.buckets, "dim": layer.dim,
               "prime": ngram_bag.PRIME, "epsilon": float(layer.norm.epsilon)}
    for variable in model.pooling.weights:
        arrays["pooling/" + "/".join(variable.path.split("/")[-2:])] = np.asarray(variable.numpy())
    arrays["head/kernel"] = np.asarray(model.head.dense.kernel.numpy(), np.float32)
    arrays["head/bias"] = np.asarray(model.head.dense.bias.numpy(), np.float32)

    cell_class = type(model.encoder.wrappers[0][0].cell)
    manifest = {
        "format": "seqtrain-weights/1",
        "cell": config.cell, "units": config.hidden_units, "num_layers": config.num_layers,
        "bidirectional": config.bidirectional, "gates": list(cell_class.gates),
        "forget_bias": config.forget_bias,
        "forget_bias_in_bias": cell_class.forget_bias_in_bias,
        "input_kind": "tokens" if config.uses_tokens else "features",
        "pooling": config.resolved_pooling, "head": config.resolved_head,
        "sequence_norm": config.uses_sequence_norm,
        "frontend": frontend, "frontend_branch": model.branch_pooling is not None,
        "random_features": random_features,
        "ngram_bag": bag,
        "layers": layers,
        "shapes": {key: list(value.shape) for key, value in sorted(arrays.items())},
        "equations": cell_class.equations,
        "onnx": ({"operator": cell_class.onnx_operator, "gates": list(cell_class.onnx_gates),
                  "attributes": cell_class.onnx_attributes,
                  "peepholes": list(cell_class.onnx_peepholes)}
                 if cell_class.onnx_operator else None),
    }
    return arrays, manifest


def export_weights(model, output_dir: str) -> Dict[str, str]:
    """Writes `weights.npz` and `weights.json` of `model` into `output_dir`; returns their paths."""
    return write_weights(*weight_arrays(model), output_dir)


def write_weights(arrays: Dict[str, np.ndarray], manifest: Dict[str, object],
                  output_dir: str) -> Dict[str, str]:
    """Writes `weight_arrays`' result as `weights.npz` and `weights.json`; returns their paths."""
    tf.io.gfile.makedirs(output_dir)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    paths = {"weights": tf.io.gfile.join(output_dir, WEIGHTS_FILE),
             "manifest": tf.io.gfile.join(output_dir, MANIFEST_FILE)}
    with tf.io.gfile.GFile(paths["weights"], "wb") as f:
        f.write(buffer.getvalue())
    with tf.io.gfile.GFile(paths["manifest"], "w") as f:
        json.dump(manifest, f, indent=1)
    return paths
