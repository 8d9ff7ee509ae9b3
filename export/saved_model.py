"""Writes one export version, verifies all of it in clean processes, and only then publishes it.

Layout of `<export_dir>/<integer version>/` (versions increase; TF Serving serves the highest):

    saved_model.pb, variables/, fingerprint.pb     signatures: see `serving.py`
    assets/labels.txt, assets/data_spec.json       (+ vocab.txt for token data): the DataSpec,
                                                   `DataSpec.load(version_dir)` rebuilds it
    assets.extra/tf_serving_warmup_requests        PredictionLogs from held-out examples
    tflite/model.tflite (+ model_quantized.tflite, labels.txt, vocab.txt, TOKENIZATION.md)
    weights/weights.npz, weights/weights.json      per-gate arrays for other runtimes

Everything is written under `<export_dir>/tmp-<version>` first. `verify_standalone.py` loads it
in a fresh Python process that imports only TensorFlow (core-op walk, every signature against
the in-memory model, warmup replay); `verify_tflite.py` runs the TFLite models in another that
imports no TensorFlow at all. Only when both pass is the folder renamed to `<version>`, so a
server watching `export_dir` never sees a half-written or broken version.

Vertex AI's layout instead (when `export_dir` is `$AIP_MODEL_DIR`, or `layout="vertex"`): the
same files directly in `export_dir` (`<export_dir>/saved_model.pb`, `tflite/`, ...), as Vertex
AI's model upload and prebuilt serving containers expect. They are still written under
`tmp-<version>` and verified there, then moved in, `saved_model.pb` last; an earlier model's
files there are replaced.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from data.spec import ASSETS_DIR, LABELS_FILE, SPEC_FILE, VOCAB_FILE
from export import formats as formats_lib
from export import vertex_env
from export.parity import largest_diff
from export.serving import ServingModule
from export.warmup import warmup_requests, write_warmup
from export.weights import weight_arrays, write_weights

# A file of this package, run by path so that the check never imports the package itself.
VERIFY_SCRIPT = str(pathlib.Path(__file__).with_name("verify_standalone.py"))
DEFAULT_FORMATS = ("saved_model", "tflite")
LAYOUTS = ("auto", "versions", "vertex")
# What one export writes at the top of its folder: in Vertex AI's layout, these names of an
# earlier model in export_dir are replaced (anything else there is left alone).
EXPORT_ENTRIES = (("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra",
                   "weights") + tuple(f.folder for f in formats_lib.RUNTIME_FORMATS.values()))
# Outputs whose SavedModel-vs-model difference is reported as saved_model_max_diff.
_CHECKED_OUTPUTS = ("logits", "probabilities", "embedding", "predictive_entropy",
                    "mutual_information")
# Rows of the second, smaller case (another batch size and length) checked everywhere.
SMALL_CASE_ROWS = 3
# Filesystems whose files live in this process's memory: a clean process cannot read them.
PROCESS_LOCAL_PREFIXES = ("ram://",)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to export (the trainer fills it from `TrainConfig`, `python -m export` from config.json).

    Attributes:
      formats: subset of `export.formats.format_names()`. TFLite and ONNX files live inside
        the version folder, so the SavedModel (the reference they are checked against) is
        always written.
      quantize: also write a dynamic-range quantized TFLite model and report its size and
        accuracy change.
      mc_samples: Monte-Carlo dropout samples of the `uncertainty` signature.
      mc_seed: base seed of those samples (mixed into each example's own mask seeds, `export.uncertainty`).
      tolerance: largest allowed |SavedModel - in-memory model| difference.
      tflite_tolerance: largest allowed |TFLite - SavedModel| difference (and ONNX's).
      layout: "versions" (`<export_dir>/<version>/`, TF Serving's), "vertex" (the model directly
        in `export_dir`) or "auto": "vertex" when `export_dir` is `$AIP_MODEL_DIR`.
    """

    formats: Sequence[str] = DEFAULT_FORMATS
    quantize: bool = False
    mc_samples: int = 20
    mc_seed: int = 0
    tolerance: float = 1e-5
    tflite_tolerance: float = 1e-4
    layout: str = "auto"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        formats_lib.check_formats(self.formats)
        if self.mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {self.mc_samples}")


def next_version(export_dir: str) -> int:
    """A version number above every existing one and no smaller than the current Unix time."""
    existing = [int(name.rstrip("/")) for name in (tf.io.gfile.listdir(export_dir)
                if tf.io.gfile.exists(export_dir) else []) if name.rstrip("/").isdigit()]
    return max([int(time.time())] + [version + 1 for version in existing])


def _small_case(sample: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The first rows of the sample, cut to their own longest length."""
    rows = {key: value[:SMALL_CASE_ROWS] for key, value in sample.items()}
    longest = max(int(rows["lengths"].max(initial=1)), 1)
    return {key: value[:, :longest] if value.ndim >= 2 and key != "labels" else value
            for key, value in rows.items()}


def expected_cases(module: ServingModule, signatures, sample: Dict[str, np.ndarray],
                   texts=None) -> Dict[str, np.ndarray]:
    """Runs each signature in memory on `sample` and records inputs and outputs for the check.

    Case groups: one per signature on the whole sample, plus "serving_default:small" (another
    batch size and length). `text` runs on `texts` (token data; skipped when None).
    """
    cases = {}
    runs = [(name, name, sample) for name in signatures]
    runs.append(("serving_default:small", "serving_default", _small_case(sample)))
    for group, name, batch in runs:
        function = signatures[name]
        names = [spec.name for spec in function.structured_input_signature[0]]
        if name == "text":
            if texts is None:
                continue
            # UTF-8 bytes: numpy's astype(bytes) would encode str as ASCII and fail on "é".
            inputs = {"text": np.asarray([t.encode("utf-8") if isinstance(t, str) else t
                                          for t in texts], dtype=object)}
        else:
            inputs = {key: batch[key] for key in names}
        outputs = function(*[tf.constant(inputs[key]) for key in names])
        for key, value in inputs.items():
            cases[f"{group}/in/{key}"] = _storable(np.asarray(value))
        for key, value in outputs.items():
            cases[f"{group}/out/{key}"] = _storable(value.numpy())
    return cases


def _storable(array: np.ndarray) -> np.ndarray:
    """String tensors come back as object arrays; store them as fixed-width bytes (no pickle)."""
    return array.astype(bytes) if array.dtype == object else array


def _write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def copy_tree(source: str, target: str) -> None:
    """Copies the folder `source` (any TF filesystem) to `target`, files and subfolders."""
    for folder, _, files in tf.io.gfile.walk(source):
        relative = folder[len(source):].lstrip("/")
        destination = tf.io.gfile.join(target, relative) if relative else target
        tf.io.gfile.makedirs(destination)
        for name in files:
            path = tf.io.gfile.join(folder, name)
            # ram:// lists children by name prefix: "assets" shows ".extra" (of "assets.extra/").
            if tf.io.gfile.exists(path):
                tf.io.gfile.copy(path, tf.io.gfile.join(destination, name), overwrite=True)


def publish(temp_dir: str, final_dir: str) -> None:
    """Moves the verified folder to its version name, where a server watching sees it at once.

    On ram:// a rename moves only the folder's own entry and leaves its files under the old
    name (measured), so there the folder is copied and then removed: not atomic, but no other
    process can watch an in-memory filesystem.
    """
    if not temp_dir.startswith(PROCESS_LOCAL_PREFIXES):
        tf.io.gfile.rename(temp_dir, final_dir)
        return
    copy_tree(temp_dir, final_dir)
    try:
        tf.io.gfile.rmtree(temp_dir)
    except tf.errors.NotFoundError:
        # ram:// lists "assets/.extra" for "assets.extra/" and, having deleted everything,
        # fails on that phantom; a real failure leaves the folder there.
        if tf.io.gfile.exists(temp_dir):
            raise


def uses_vertex_layout(export_dir: str, layout: str = "auto") -> bool:
    """Whether the model goes directly into `export_dir` (see the module docstring)."""
    if layout != "auto":
        return layout == "vertex"
    model_dir = vertex_env.model_dir()
    return bool(model_dir) and model_dir.rstrip("/") == export_dir.rstrip("/")


def publish_into(temp_dir: str, target: str) -> None:
    """Moves a verified export's files from `temp_dir` into `target` itself (Vertex AI's layout).

    The earlier model's `saved_model.pb` goes first and the new one comes last, so `target` holds
    a loadable model only while all of that model's files are in place.
    """
    for name in EXPORT_ENTRIES:  # saved_model.pb first
        old = tf.io.gfile.join(target, name)
        if tf.io.gfile.isdir(old):
            tf.io.gfile.rmtree(old)
        elif tf.io.gfile.exists(old):
            tf.io.gfile.remove(old)
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(temp_dir)]
    for name in sorted(names, key=lambda n: n == "saved_model.pb"):
        source, destination = tf.io.gfile.join(temp_dir, name), tf.io.gfile.join(target, name)
        if tf.io.gfile.isdir(source):
            publish(source, destination)  # a folder: copied on ram://, see `publish`
        else:
            tf.io.gfile.rename(source, destination, overwrite=True)
    tf.io.gfile.rmtree(temp_dir)


def verify(saved_model_dir: str, cases: Dict[str, np.ndarray], tolerance: float = 1e-5,
           outputs_path: str = "") -> Dict:
    """Checks the SavedModel in a fresh Python process; raises RuntimeError if it fails.

    A SavedModel on a filesystem only this process can see (`PROCESS_LOCAL_PREFIXES`: ram://)
    is checked as a byte-for-byte local copy, still in a fresh process (logged).
    With `outputs_path`, the loaded model's outputs per case are written there (npz).
    """
    scratch = tempfile.mkdtemp(prefix="seqtrain-verify-")
    cases_path = str(pathlib.Path(scratch) / "cases.npz")
    _write_npz(cases_path, cases)
    checked_dir = saved_model_dir
    if saved_model_dir.startswith(PROCESS_LOCAL_PREFIXES):
        checked_dir = str(pathlib.Path(scratch) / "saved_model")
        copy_tree(saved_model_dir, checked_dir)
        logging.info("%s is in this process's memory, which another process cannot read: verifying "
                     "a local copy of it (%s) in a clean process instead", saved_model_dir, checked_dir)
    command = [sys.executable, VERIFY_SCRIPT, checked_dir, cases_path, "--tolerance", str(tolerance)]
    if outputs_path:
        command += ["--outputs", outputs_path]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    tf.io.gfile.rmtree(scratch)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"exported SavedModel {saved_model_dir} failed verification:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


def _runtime_cases(cases: Dict[str, np.ndarray], accuracy_batches: List[Dict[str, np.ndarray]],
                  input_key: str) -> Dict[str, np.ndarray]:
    tflite_cases = {k: v for k, v in cases.items()
                    if k.split("/")[0].split(":")[0] == "serving_default" and "/in/" in k}
    for index, batch in enumerate(accuracy_batches):
        group = f"accuracy:{index:04d}"
        tflite_cases[f"{group}/in/{input_key}"] = batch[input_key]
        tflite_cases[f"{group}/in/lengths"] = batch["lengths"]
        for target in ("label", "labels", "tags"):
            if target in batch:
                value = batch[target]
                tflite_cases[f"{group}/target/{target}"] = (
                    value.astype(np.int32) if target == "labels" else value)
    return tflite_cases


def export_saved_model(model, spec, head: str, model_dir: str, export_dir: str,
                       sample: Dict[str, np.ndarray], texts=None,
                       options: Optional[ExportOptions] = None,
                       accuracy_batches: Sequence[Dict[str, np.ndarray]] = ()) -> Dict[str, object]:
    """Writes, verifies and publishes one export version; returns paths and check results.

    Args:
      model: the trained classifier (called as `model(inputs, training=False)` -> logits).
      spec: the `DataSpec`; its asset files in `<model_dir>/assets/` are copied into the export.
      head: the head name ("multiclass", "binary", "multilabel", "tagging").
      model_dir: where the spec's assets live.
      export_dir: the folder of versions (TF Serving's model base path).
      sample: a batch of held-out inputs (numpy), used to check the export against the model.
      texts: raw strings for the `text` signature check and warmup (token data only).
      options: `ExportOptions` (default: SavedModel and TFLite, no quantization).
      accuracy_batches: held-out batches with targets, for the TFLite accuracy report.

    Raises:
      RuntimeError: a check failed; the unverified folder stays at `tmp-<version>`.
    """
    options = options or ExportOptions()
    tf.io.gfile.makedirs(export_dir)
    version = next_version(export_dir)
    vertex = uses_vertex_layout(export_dir, options.layout)
    final_dir = export_dir if vertex else tf.io.gfile.join(export_dir, str(version))
    temp_dir = tf.io.gfile.join(export_dir, f"tmp-{version}")
    assets = tf.io.gfile.join(model_dir, ASSETS_DIR)
    vocab_path = tf.io.gfile.join(assets, VOCAB_FILE) if spec.is_tokens else ""
    module = ServingModule(model, spec, head, vocab_path, mc_samples=options.mc_samples,
                           mc_seed=options.mc_seed)
    signatures = module.signatures()
    tf.saved_model.save(module, temp_dir, signatures=signatures)
    tf.io.gfile.makedirs(tf.io.gfile.join(temp_dir, ASSETS_DIR))
    for name in (LABELS_FILE, SPEC_FILE):
        tf.io.gfile.copy(tf.io.gfile.join(assets, name), tf.io.gfile.join(temp_dir, ASSETS_DIR, name),
                         overwrite=True)

    cases = expected_cases(module, signatures, sample, texts)
    result: Dict[str, object] = {"saved_model": final_dir, "version": version,
                                 "layout": "vertex" if vertex else "versions",
                                 "signatures": sorted(signatures), "mc_samples": options.mc_samples}
    requests = warmup_requests(signatures, sample, texts)
    write_warmup(temp_dir, requests)
    result["warmup_requests"] = len(requests)
    result["weights"] = tf.io.gfile.join(final_dir, "weights", "weights.npz")
    arrays, manifest = weight_arrays(model)
    write_weights(arrays, manifest, tf.io.gfile.join(temp_dir, "weights"))
    runtime_formats = formats_lib.requested(options.formats)
    context = formats_lib.WriteContext(module=module, spec=spec, version_dir=temp_dir,
                                       vocab_path=vocab_path, arrays=arrays, manifest=manifest,
                                       options=options)
    written = {f.name: f.write(context) for f in runtime_formats}
    for entries in written.values():
        result.update({key: value.replace(temp_dir, final_dir) if isinstance(value, str)
                       and not key.endswith("_skipped") else value for key, value in entries.items()})
    scratch = tempfile.mkdtemp(prefix="seqtrain-export-")
    try:
        outputs_path = str(pathlib.Path(scratch) / "saved_model_outputs.npz")
        check = verify(temp_dir, cases, options.tolerance, outputs_path)
        result["verified"] = check["ok"]
        result["checked"] = sorted(check["signatures"])
        result["saved_model_max_diff"] = largest_diff(check["signatures"], _CHECKED_OUTPUTS)
        result["warmup_replayed"] = sum(check.get("warmup", {}).values())
        cases_path = str(pathlib.Path(scratch) / "runtime_cases.npz")
        if runtime_formats:
            _write_npz(cases_path, _runtime_cases(cases, list(accuracy_batches), module.model.input_key))
        for runtime_format in runtime_formats:
            if any(key.endswith("_skipped") for key in written[runtime_format.name]):
                continue
            result.update(runtime_format.verify(formats_lib.VerifyContext(
                version_dir=temp_dir, scratch=scratch, cases_path=cases_path,
                outputs_path=outputs_path, written=written[runtime_format.name], options=options)))
    except RuntimeError:
        logging.error("verification failed; the unverified export stays at %s for inspection", temp_dir)
        raise
    finally:
        tf.io.gfile.rmtree(scratch)
    if vertex:
        publish_into(temp_dir, final_dir)
    else:
        publish(temp_dir, final_dir)
    logging.info("exported and verified %s: %s", final_dir, check["signatures"])
    return result
