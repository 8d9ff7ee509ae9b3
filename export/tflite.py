"""TFLite: the numeric `serving_default` signature with TFLite builtin ops only.

Written into `<version>/tflite/`: `model.tflite` (float32), `model_quantized.tflite` (dynamic-range
quantized weights, when asked), `labels.txt` (class id i is line i), and for token data
`vocab.txt` plus `TOKENIZATION.md`: the text signature needs string ops TFLite lacks, so apps
tokenize themselves and feed `token_ids`. Batch and time are dynamic: resize the inputs
(`Interpreter.resize_tensor_input`, or let the signature runner do it) to any batch and length.
Checked by `verify_tflite.py` in a process without TensorFlow.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
from typing import Dict

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from data.spec import LABELS_FILE, VOCAB_FILE
from export.parity import largest_diff

TFLITE_DIR = "tflite"
MODEL_FILE = "model.tflite"
QUANTIZED_FILE = "model_quantized.tflite"
VERIFY_SCRIPT = str(pathlib.Path(__file__).with_name("verify_tflite.py"))

TOKENIZATION_NOTE = """# Tokenizing for model.tflite and model.onnx

The TFLite and ONNX models take `token_ids` int32 [batch, time] and `lengths` int32 [batch], like the
SavedModel's `serving_default`. Build them the way training did (`data/tokenizer.py`):

1. lower-case the text (Unicode-aware) when `lowercase` is {lowercase};
2. put spaces around every punctuation or symbol character, then split on whitespace;
3. a token on line k (0-based) of `vocab.txt` has id k + 1; 0 is padding; a token not in the
   vocabulary gets id {oov_start} (with {num_oov_buckets} OOV bucket(s), TensorFlow hashes it into
   {oov_start}..{oov_end} with `Fingerprint64` modulo the bucket count);
4. pad every row with 0 to the longest row and pass the real lengths{max_length_note}.
"""


def convert(function, quantize: bool = False) -> bytes:
    """Converts a concrete function to a TFLite flatbuffer with builtin ops only.

    The function's variables are frozen into constants and the frozen function is saved as a
    one-signature SavedModel that the converter reads (so the TFLite model has a
    `serving_default` signature with named inputs and outputs). Two traps this avoids:
    converted with its variables (`from_concrete_functions(..., trackable)`), the model kept
    VAR_HANDLE/READ_VARIABLE ops nothing initialises (wrong logits under XNNPACK, a failed
    invoke without it); and the converter's own save of a frozen bidirectional encoder fails
    on the recurrence's custom gradient, after which it silently falls back to a path without
    signatures.
    """
    frozen = convert_variables_to_constants_v2(function)
    names = sorted(function.structured_outputs)  # a dict flattens in sorted key order

    @tf.function(input_signature=function.structured_input_signature[0])
    def serving_default(*inputs):
        return dict(zip(names, frozen(*inputs)))  # output names back, for the signature runner

    holder = tf.Module()
    holder.serving_default = serving_default
    with tempfile.TemporaryDirectory(prefix="seqtrain-tflite-") as scratch:
        tf.saved_model.save(holder, scratch,
                            signatures={"serving_default": serving_default.get_concrete_function()},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range: int8 weights
        return converter.convert()


REPORT_ROWS = (
    ("tflite", "TFLite model"), ("tflite_bytes", "TFLite size"),
    ("tflite_verified", "TFLite verified (no TensorFlow)"),
    ("tflite_max_diff", "TFLite max |diff| vs SavedModel"),
    ("tflite_accuracy_float", "TFLite accuracy"), ("tflite_accuracy_examples", "TFLite accuracy examples"),
    ("tflite_quantized", "quantized TFLite"), ("tflite_quantized_bytes", "quantized TFLite size"),
    ("quantized_size_ratio", "quantized / float size"), ("tflite_accuracy_quantized", "quantized accuracy"),
    ("quantized_accuracy_change", "quantized accuracy change"),
    ("tflite_quantized_max_probability_diff", "quantized max |probability diff|"),
    ("tflite_latency_ms_batch1", "TFLite latency, batch 1 (ms)"),
)


def write_format(context) -> Dict[str, object]:
    """The `tflite` entry of `export.formats`: writes `tflite/` into the version folder."""
    return write_tflite(context.module, context.spec, context.version_dir, context.vocab_path,
                        context.options.quantize)


def verify_format(context) -> Dict[str, object]:
    """The `tflite` entry's check: parity, accuracy (float and quantized) and batch-1 latency
    under `ai_edge_litert` in a process without TensorFlow; raises RuntimeError on failure."""
    folder = tf.io.gfile.join(context.version_dir, TFLITE_DIR)
    local = {}
    names = [MODEL_FILE] + ([QUANTIZED_FILE] if context.options.quantize else [])
    for name in names:  # the checker has no TensorFlow, so no gs://: local copies
        local[name] = str(pathlib.Path(context.scratch) / name)
        tf.io.gfile.copy(tf.io.gfile.join(folder, name), local[name], overwrite=True)
    lite = verify_tflite(context.cases_path, context.outputs_path, local[MODEL_FILE],
                         local.get(QUANTIZED_FILE, ""), context.options.tflite_tolerance)
    result: Dict[str, object] = {
        "tflite_max_diff": largest_diff(lite["max_diff"]),
        "tflite_verified": lite["ok"]}
    for key in ("accuracy_float", "accuracy_quantized", "accuracy_examples",
                "quantized_max_probability_diff", "latency_ms_batch1"):
        if key in lite:
            result[f"tflite_{key}"] = lite[key]
    if context.options.quantize:
        result["quantized_size_ratio"] = (context.written["tflite_quantized_bytes"]
                                          / context.written["tflite_bytes"])
        if "accuracy_quantized" in lite:
            result["quantized_accuracy_change"] = lite["accuracy_quantized"] - lite["accuracy_float"]
    return result


def write_tflite(module, spec, version_dir: str, vocab_path: str = "",
                 quantize: bool = False) -> Dict[str, object]:
    """Converts `module.tflite_function()` and writes the `tflite/` folder; returns paths, sizes."""
    folder = tf.io.gfile.join(version_dir, TFLITE_DIR)
    tf.io.gfile.makedirs(folder)
    function = module.tflite_function()
    result: Dict[str, object] = {}
    for name, quantized in ((MODEL_FILE, False), (QUANTIZED_FILE, True)):
        if quantized and not quantize:
            continue
        content = convert(function, quantize=quantized)
        path = tf.io.gfile.join(folder, name)
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(content)
        key = "tflite_quantized" if quantized else "tflite"
        result[key] = path
        result[key + "_bytes"] = len(content)
    write_labels_and_vocab(folder, spec, vocab_path)
    return result


def verify_tflite(cases_path: str, expected_path: str, model_path: str, quantized_path: str = "",
                  tolerance: float = 1e-4) -> Dict[str, object]:
    """Runs `verify_tflite.py` in a fresh process (no TensorFlow); raises RuntimeError on failure."""
    command = [sys.executable, VERIFY_SCRIPT, cases_path, expected_path, model_path]
    command += [quantized_path] if quantized_path else []
    result = subprocess.run(command + ["--tolerance", str(tolerance)], capture_output=True,
                            text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"TFLite model {model_path} failed verification:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def write_labels_and_vocab(folder: str, spec, vocab_path: str = "") -> None:
    """`labels.txt` (class id i is line i) and, for token data, `vocab.txt` and
    `TOKENIZATION.md` into `folder`: what an app beside a model without string ops needs."""
    with tf.io.gfile.GFile(tf.io.gfile.join(folder, LABELS_FILE), "w") as f:
        f.write("".join(label + "\n" for label in spec.labels))
    if spec.is_tokens:
        tf.io.gfile.copy(vocab_path, tf.io.gfile.join(folder, VOCAB_FILE), overwrite=True)
        oov_start = len(spec.vocab) + 1
        note = TOKENIZATION_NOTE.format(
            lowercase=spec.lowercase, oov_start=oov_start, num_oov_buckets=spec.num_oov_buckets,
            oov_end=oov_start + spec.num_oov_buckets - 1,
            max_length_note=f"; keep at most the first {spec.max_length} tokens" if spec.max_length else "")
        with tf.io.gfile.GFile(tf.io.gfile.join(folder, "TOKENIZATION.md"), "w") as f:
            f.write(note)
