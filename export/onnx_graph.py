"""The exported model as an ONNX graph, built from `weights.npz` + `weights.json` alone.

`build_onnx(arrays, manifest)` returns an `onnx.ModelProto` (opset `OPSET`) with

  inputs:  `features` float32 [batch, time, D] (raw: normalisation is in the graph) or
           `token_ids` int32 [batch, time] (0 padding), and `lengths` int32 [batch];
  outputs: `logits`, `probabilities` float32 and `class_ids` int32, shaped as
           `serving_default`'s (multiclass [B, C], [B, C], [B]; binary [B, 1], [B, 1], [B];
           multilabel [B, C] each; tagging [B, T, C], [B, T, C], [B, T]).

The recurrence is ONNX's own length-aware `LSTM` / `GRU` / `RNN` operator with
`sequence_lens` (forward or bidirectional; the reverse direction reads each sequence reversed
within its length, as the trainer's encoder does). Everything around it is standard ops:
normalisation or embedding lookup, per-sequence z-normalisation, the strided convolutional
front end (Conv + LayerNormalization + Relu, lengths ceil(length / stride)), the
random-convolution and hashed n-gram branches, every pooling and head. Values past a length
are replaced by zeros before anything reads them (`Where`), so garbage there, even NaN, cannot
reach the outputs.

What ONNX's recurrent operators cannot express raises `UnsupportedForOnnx` with the reason
(today: the `layer_norm_lstm` cell, whose gates are layer-normalised inside the step); the
export then skips ONNX and says so instead of failing the run.

Imports numpy and onnx only: no TensorFlow, nothing of this package.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization; supported by onnxruntime and onnxruntime-web
PRODUCER = "seqtrain"


class UnsupportedForOnnx(ValueError):
    """The model has a part no standard ONNX operator expresses; the message says which."""


class _Builder:
    """Accumulates nodes and initializers; every method returns its output's name."""

    def __init__(self):
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype=None, hint: str = "const") -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, output: Optional[str] = None,
           **attributes):
        names = [output] if output else [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else names

    # Small compositions used throughout.
    def ints(self, *values) -> str:
        return self.const(np.asarray(values, np.int64), hint="ints")

    def where_mask(self, mask3: str, values: str) -> str:
        """values where the [B, T, 1] bool mask holds, exact zeros elsewhere (NaN included)."""
        zero = self.const(np.zeros((), np.float32), hint="zero")
        return self.op("Where", mask3, values, zero)


def _time_and_mask(b: _Builder, steps: str, lengths: str) -> Tuple[str, str, str]:
    """(time int32 scalar, lengths clipped to time int32 [B], mask bool [B, T]) of `steps`."""
    time = b.op("Cast", b.op("Gather", b.op("Shape", steps), b.const(np.int64(1)), axis=0),
                to=TensorProto.INT32)
    return time, *_mask_for(b, time, lengths)


def _mask_for(b: _Builder, time: str, lengths: str) -> Tuple[str, str]:
    clipped = b.op("Min", lengths, time)
    positions = b.op("Range", b.const(np.int32(0)), time, b.const(np.int32(1)))
    mask = b.op("Less", b.op("Unsqueeze", positions, b.ints(0)),
                b.op("Unsqueeze", clipped, b.ints(1)))
    return clipped, mask


def _masked_mean(b: _Builder, steps: str, mask: str, lengths: str) -> str:
    """float32 [B, H]: mean of steps [B, T, H] over real steps, zeros at length 0."""
    mask3 = b.op("Unsqueeze", mask, b.ints(2))
    total = b.op("ReduceSum", b.where_mask(mask3, steps), b.ints(1), keepdims=0)
    count = b.op("Cast", b.op("Max", lengths, b.const(np.int32(1))), to=TensorProto.FLOAT)
    return b.op("Div", total, b.op("Unsqueeze", count, b.ints(1)))


def _sequence_norm(b: _Builder, steps: str, mask3: str, lengths: str, epsilon: float) -> str:
    count = b.op("Cast", b.op("Max", lengths, b.const(np.int32(1))), to=TensorProto.FLOAT)
    count = b.op("Reshape", count, b.ints(-1, 1, 1))
    mean = b.op("Div", b.op("ReduceSum", steps, b.ints(1), keepdims=1), count)
    centred = b.where_mask(mask3, b.op("Sub", steps, mean))
    variance = b.op("Div", b.op("ReduceSum", b.op("Mul", centred, centred), b.ints(1), keepdims=1),
                    count)
    scale = b.op("Reciprocal", b.op("Sqrt", b.op("Add", variance, b.const(np.float32(epsilon)))))
    return b.op("Mul", centred, scale)


def _ngram_bag(b: _Builder, arrays, bag, ids: str, time: str, lengths: str) -> str:
    """float32 [B, dim]: LayerNorm of the mean table row over every n-gram inside the length."""
    orders, buckets, prime = int(bag["orders"]), int(bag["buckets"]), int(bag["prime"])
    padded = b.op("Pad", ids, b.ints(0, 0, 0, orders - 1))
    positions = b.op("Unsqueeze", b.op("Range", b.const(np.int32(0)), time, b.const(np.int32(1))),
                     b.ints(0))
    lengths2 = b.op("Unsqueeze", lengths, b.ints(1))
    table = b.const(arrays["ngram_bag/table"], np.float32, hint="ngram_table")
    time64 = b.op("Cast", time, to=TensorProto.INT64)
    hashed = b.op("Add", b.op("Mul", ids, b.const(np.int32(0))), b.const(np.int32(1)))
    total = count = None
    for n in range(1, orders + 1):
        start = b.ints(n - 1)
        shifted = b.op("Slice", padded, start, b.op("Add", start, b.op("Reshape", time64, b.ints(1))),
                       b.ints(1))
        hashed = b.op("Mod", b.op("Add", b.op("Add", b.op("Mul", hashed, b.const(np.int32(prime))),
                                              shifted), b.const(np.int32(1))),
                      b.const(np.int32(buckets)))
        valid = b.op("LessOrEqual", b.op("Add", positions, b.const(np.int32(n))), lengths2)
        weight = b.op("Cast", valid, to=TensorProto.FLOAT)
        rows = b.op("Gather", table, hashed, axis=0)  # [B, T, dim]
        part = b.op("ReduceSum", b.op("Mul", rows, b.op("Unsqueeze", weight, b.ints(2))), b.ints(1),
                    keepdims=0)
        number = b.op("ReduceSum", weight, b.ints(1), keepdims=1)
        total = part if total is None else b.op("Add", total, part)
        count = number if count is None else b.op("Add", count, number)
    mean = b.op("Div", total, b.op("Max", count, b.const(np.float32(1.0))))
    return b.op("LayerNormalization", mean, b.const(arrays["ngram_bag/gamma"], np.float32),
                b.const(arrays["ngram_bag/beta"], np.float32), axis=-1,
                epsilon=float(bag["epsilon"]))


def _random_features(b: _Builder, arrays, spec, steps: str, time: str, lengths: str,
                     feature_dim: int) -> str:
    """float32 [B, F]: standardised, scaled PPV features (`models/random_conv.py`)."""
    stride, length = int(spec["position_stride"]), int(spec["kernel_length"])
    kernels, biases = arrays["random_features/kernels"], arrays["random_features/biases"]
    per_kernel = int(spec["biases_per_kernel"])
    num_kernels = kernels.shape[-1]
    positions = b.op("Div", b.op("Add", time, b.const(np.int32(stride - 1))), b.const(np.int32(stride)))
    real = b.op("Div", b.op("Add", lengths, b.const(np.int32(stride - 1))), b.const(np.int32(stride)))
    _, mask = _mask_for(b, positions, real)
    mask4 = b.op("Unsqueeze", mask, b.ints(2, 3))  # [B, T', 1, 1]
    count = b.op("Cast", b.op("Max", real, b.const(np.int32(1))), to=TensorProto.FLOAT)
    count = b.op("Reshape", count, b.ints(-1, 1, 1))
    span = b.op("Cast", b.op("Mul", positions, b.const(np.int32(stride))), to=TensorProto.INT64)
    span = b.op("Reshape", span, b.ints(1))
    features = []
    for index, dilation in enumerate(spec["dilations"]):
        pad = (length - 1) // 2 * int(dilation)
        padded = b.op("Pad", steps, b.ints(0, pad, 0, 0, pad + stride, 0))
        shifts = []
        for k in range(length):
            start = b.ints(k * int(dilation))
            shifts.append(b.op("Slice", padded, start, b.op("Add", start, span), b.ints(1),
                               b.ints(stride)))
        windows = b.op("Concat", *shifts, axis=-1)  # [B, T', 9 * D], tap-major
        kernel = kernels[index].reshape(length * feature_dim, num_kernels)
        out = b.op("MatMul", windows, b.const(kernel, np.float32, hint="random_kernel"))
        positive = b.op("And", b.op("Greater", b.op("Unsqueeze", out, b.ints(3)),
                                    b.const(biases[index], np.float32, hint="random_bias")), mask4)
        ppv = b.op("Div", b.op("ReduceSum", b.op("Cast", positive, to=TensorProto.FLOAT), b.ints(1),
                               keepdims=0), count)
        features.append(b.op("Reshape", ppv, b.ints(0, num_kernels * per_kernel)))
    joined = b.op("Concat", *features, axis=-1)
    scaled = b.op("Div", b.op("Sub", joined, b.const(arrays["random_features/feature_mean"], np.float32)),
                  b.const(arrays["random_features/feature_std"], np.float32))
    return b.op("Mul", scaled, b.const(np.float32(spec["scale"])))


def _frontend(b: _Builder, arrays, layers, steps: str, time: str, lengths: str):
    """(steps [B, T', F] zeros past each new length, time', lengths', mask'): the conv stack."""
    mask = None
    for layer in layers:
        prefix, stride, size = layer["prefix"], int(layer["stride"]), int(layer["kernel_size"])
        left = int(layer["left_padding"])
        _, mask = _mask_for(b, time, lengths)
        steps = b.where_mask(b.op("Unsqueeze", mask, b.ints(2)), steps)
        padded = b.op("Pad", steps, b.ints(0, left, 0, 0, size - 1 - left + stride, 0))
        kernel = np.transpose(arrays[f"{prefix}/kernel"], (2, 1, 0))  # [k, D, F] -> [F, D, k]
        conv = b.op("Conv", b.op("Transpose", padded, perm=[0, 2, 1]),
                    b.const(kernel, np.float32, hint="conv_kernel"),
                    b.const(arrays[f"{prefix}/bias"], np.float32, hint="conv_bias"),
                    strides=[stride], kernel_shape=[size])
        time = b.op("Div", b.op("Add", time, b.const(np.int32(stride - 1))), b.const(np.int32(stride)))
        end = b.op("Reshape", b.op("Cast", time, to=TensorProto.INT64), b.ints(1))
        steps = b.op("Slice", b.op("Transpose", conv, perm=[0, 2, 1]), b.ints(0), end, b.ints(1))
        steps = b.op("Relu", b.op("LayerNormalization", steps,
                                  b.const(arrays[f"{prefix}/gamma"], np.float32),
                                  b.const(arrays[f"{prefix}/beta"], np.float32), axis=-1,
                                  epsilon=1e-5))
        lengths = b.op("Div", b.op("Add", lengths, b.const(np.int32(stride - 1))),
                       b.const(np.int32(stride)))
    _, mask = _mask_for(b, time, lengths)
    steps = b.where_mask(b.op("Unsqueeze", mask, b.ints(2)), steps)
    return steps, time, lengths, mask


def _recurrent_weights(arrays, gates, prefix: str):
    """(W [G*H, D], R [G*H, H], B [2*G*H]) of one direction, `gates` in ONNX's order."""
    kernel = np.concatenate([arrays[f"{prefix}/{g}/kernel"].T for g in gates], axis=0)
    recurrent = np.concatenate([arrays[f"{prefix}/{g}/recurrent_kernel"].T for g in gates], axis=0)
    bias = np.concatenate([arrays[f"{prefix}/{g}/bias"] for g in gates])
    return kernel, recurrent, np.concatenate([bias, np.zeros_like(bias)])


def _encoder(b: _Builder, arrays, manifest, steps: str, lengths: str, mask: str):
    """(outputs [B, T, H*dirs] zeros past each length, final [B, H*dirs]) of the stack."""
    cell, units, onnx_form = manifest["cell"], int(manifest["units"]), manifest["onnx"]
    directions = 2 if manifest["bidirectional"] else 1
    by_layer: Dict[int, List[dict]] = {}
    for layer in manifest["layers"]:
        by_layer.setdefault(int(layer["layer"]), []).append(layer)
    mask3 = b.op("Unsqueeze", mask, b.ints(2))
    # ONNX runtimes reject a sequence length of 0: run those rows with length 1 and zero them.
    empty = b.op("Equal", lengths, b.const(np.int32(0)))
    run_lengths = b.op("Max", lengths, b.const(np.int32(1)))
    final = None
    for index in sorted(by_layer):
        rows = sorted(by_layer[index], key=lambda layer: layer["direction"] != "forward")
        weights = [_recurrent_weights(arrays, onnx_form["gates"], row["prefix"]) for row in rows]
        stacked = [b.const(np.stack(parts).astype(np.float32), hint=f"{cell}_{name}")
                   for parts, name in zip(zip(*weights), ("W", "R", "B"))]
        optional = []  # after sequence_lens: initial_h, initial_c (none), then P
        if onnx_form.get("peepholes"):
            peepholes = np.stack([np.concatenate([arrays[f"{row['prefix']}/{g}/peephole"]
                                                  for g in onnx_form["peepholes"]]) for row in rows])
            optional = ["", "", b.const(peepholes.astype(np.float32), hint=f"{cell}_P")]
        # A list-valued attribute (activations) is given once per direction.
        attributes = {name: value * directions if isinstance(value, list) else value
                      for name, value in onnx_form["attributes"].items()}
        attributes.update(hidden_size=units,
                          direction="bidirectional" if directions == 2 else "forward")
        sequence = b.op("Transpose", steps, perm=[1, 0, 2])  # [T, B, D]
        y, y_h = b.op(onnx_form["operator"], sequence, *stacked, run_lengths, *optional, outputs=2,
                      **attributes)
        # Y [T, dirs, B, H] -> [B, T, dirs * H] (forward then backward, as the encoder concatenates).
        steps = b.op("Reshape", b.op("Transpose", y, perm=[2, 0, 1, 3]), b.ints(0, 0, -1))
        steps = b.where_mask(mask3, steps)
        final = b.op("Reshape", b.op("Transpose", y_h, perm=[1, 0, 2]), b.ints(0, -1))
    final = b.op("Where", b.op("Unsqueeze", empty, b.ints(1)), b.const(np.float32(0.0)), final)
    return steps, final


def _pool(b: _Builder, arrays, pooling: str, outputs: str, final: str, lengths: str, mask: str):
    if pooling == "last":
        return final
    if pooling == "mean":
        return _masked_mean(b, outputs, mask, lengths)
    mask3 = b.op("Unsqueeze", mask, b.ints(2))
    if pooling == "max":
        lowest = b.const(np.float32(np.finfo(np.float32).min))
        pooled = b.op("ReduceMax", b.op("Where", mask3, outputs, lowest), axes=[1], keepdims=0)
        has_steps = b.op("Unsqueeze", b.op("Greater", lengths, b.const(np.int32(0))), b.ints(1))
        return b.op("Where", has_steps, pooled, b.const(np.float32(0.0)))
    if pooling == "attention":
        projected = b.op("Tanh", b.op("Add", b.op("MatMul", outputs, b.const(
            arrays["pooling/projection/kernel"], np.float32)), b.const(
            arrays["pooling/projection/bias"], np.float32)))
        scores = b.op("Squeeze", b.op("MatMul", projected, b.const(arrays["pooling/score/kernel"],
                                                                    np.float32)), b.ints(2))
        scores = b.op("Where", mask, scores, b.const(np.float32(-1e9)))
        weights = b.op("Where", mask, b.op("Softmax", scores, axis=-1), b.const(np.float32(0.0)))
        return b.op("ReduceSum", b.op("Mul", b.op("Unsqueeze", weights, b.ints(2)), outputs),
                    b.ints(1), keepdims=0)
    raise UnsupportedForOnnx(f"pooling {pooling!r} has no ONNX form here")


def check_supported(manifest) -> None:
    """Raises `UnsupportedForOnnx` when the manifest's model cannot be written as ONNX."""
    if not manifest.get("onnx"):
        raise UnsupportedForOnnx(
            f"cell {manifest['cell']!r} has no ONNX recurrent operator (ONNX's LSTM/GRU/RNN: "
            f"no per-gate layer normalisation, for one); the SavedModel and TFLite exports serve it")
    if manifest["pooling"] not in ("last", "mean", "max", "attention"):
        raise UnsupportedForOnnx(f"pooling {manifest['pooling']!r} has no ONNX form here")


def build_onnx(arrays: Dict[str, np.ndarray], manifest: Dict[str, object],
               feature_dim: int = 0) -> onnx.ModelProto:
    """The model of `weights.npz` (arrays) + `weights.json` (manifest) as a checked ONNX model.

    feature_dim: D of dense inputs (from the first layer's input width when 0 and there is no
      front end or normalisation to read it from). Raises `UnsupportedForOnnx`.
    """
    check_supported(manifest)
    b = _Builder()
    tokens = manifest["input_kind"] == "tokens"
    head = manifest["head"]
    if not feature_dim and not tokens:
        feature_dim = int(arrays["input/feature_mean"].shape[0]) if "input/feature_mean" in arrays \
            else int(manifest["layers"][0]["input_size"])
    input_name = "token_ids" if tokens else "features"
    graph_inputs = [
        helper.make_tensor_value_info(
            input_name, TensorProto.INT32 if tokens else TensorProto.FLOAT,
            ["batch", "time"] if tokens else ["batch", "time", feature_dim]),
        helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]),
    ]
    time, lengths, mask = _time_and_mask(b, input_name, "lengths")
    mask3 = b.op("Unsqueeze", mask, b.ints(2))
    branches = {}
    if tokens:
        ids = b.op("Where", mask, input_name, b.const(np.int32(0)))
        steps = b.op("Gather", b.const(arrays["input/embedding"], np.float32, hint="embedding"), ids,
                     axis=0)
        if manifest.get("ngram_bag"):
            branches["ngram"] = _ngram_bag(b, arrays, manifest["ngram_bag"], ids, time, lengths)
    else:
        steps = input_name
        if "input/feature_mean" in arrays:
            steps = b.op("Div", b.op("Sub", steps, b.const(arrays["input/feature_mean"], np.float32)),
                         b.const(arrays["input/feature_std"], np.float32))
    steps = b.where_mask(mask3, steps)
    if manifest.get("sequence_norm"):
        steps = _sequence_norm(b, steps, mask3, lengths, 1e-6)
    if manifest.get("random_features"):
        branches["random"] = _random_features(b, arrays, manifest["random_features"], steps, time,
                                              lengths, feature_dim)
    if manifest.get("frontend"):
        steps, time, lengths, mask = _frontend(b, arrays, manifest["frontend"], steps, time, lengths)
        if manifest.get("frontend_branch"):
            branches["frontend"] = _masked_mean(b, steps, mask, lengths)
    outputs, final = _encoder(b, arrays, manifest, steps, lengths, mask)
    kernel = b.const(arrays["head/kernel"], np.float32, hint="head_kernel")
    bias = b.const(arrays["head/bias"], np.float32, hint="head_bias")
    if head == "tagging":
        logits = b.op("Add", b.op("MatMul", outputs, kernel), bias)
        logits = b.where_mask(b.op("Unsqueeze", mask, b.ints(2)), logits)
    else:
        parts = [_pool(b, arrays, manifest["pooling"], outputs, final, lengths, mask)]
        parts += [branches[name] for name in ("frontend", "random", "ngram") if name in branches]
        pooled = parts[0] if len(parts) == 1 else b.op("Concat", *parts, axis=-1)
        logits = b.op("Add", b.op("MatMul", pooled, kernel), bias)
    b.op("Identity", logits, output="logits")
    if head in ("binary", "multilabel"):
        b.op("Sigmoid", logits, output="probabilities")
        positive = b.op("Greater", logits, b.const(np.float32(0.0)))
        if head == "binary":
            positive = b.op("Squeeze", positive, b.ints(1))
        b.op("Cast", positive, to=TensorProto.INT32, output="class_ids")
    else:
        b.op("Softmax", logits, axis=-1, output="probabilities")
        b.op("Cast", b.op("ArgMax", logits, axis=-1, keepdims=0), to=TensorProto.INT32,
             output="class_ids")
    classes = int(arrays["head/kernel"].shape[1])
    lead = ["batch", "time"] if head == "tagging" else ["batch"]
    graph_outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, lead + [classes]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, lead + [classes]),
        helper.make_tensor_value_info("class_ids", TensorProto.INT32,
                                      lead + ([classes] if head == "multilabel" else [])),
    ]
    graph = helper.make_graph(b.nodes, "sequence_classifier", graph_inputs, graph_outputs,
                              b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER)
    model.ir_version = 8  # what onnxruntime-web and older runtimes read (IR 8 = opset <= 18)
    onnx.checker.check_model(model, full_check=True)
    return model
