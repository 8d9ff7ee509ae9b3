"""`<model_dir>/report.html`: one self-contained page about a training run, for a person.

Written at the end of every training run (`trainer.train`) and by `python -m export`. All it
shows is read back from the model dir, so it can be rebuilt from the files alone:

  metrics.json            final eval/test metrics (per class too), the evaluation history, the
                          best checkpoint, throughput, the export, and the final split's
                          confusion matrix and reliability bins ("predictions")
  config.json             the resolved config
  prepared/manifest.json  records, skipped records by reason, truncations, per split
  prepared/*.tfrecord     labels and lengths per split (at most MAX_RECORDS_READ records each)
  train/ summaries        train loss, sequences/s, real tokens/s and padding share by step
                          (under $AIP_TENSORBOARD_LOG_DIR when Vertex AI sets it)

Figures are PNGs inside the page (base64 data URIs); it has no script and links no file, so it
opens anywhere, from a bucket's browser to an e-mail. When the export is in Vertex AI's layout
(`"layout": "vertex"` in the export result) a copy goes beside the model as well.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.util import event_pb2

from data.file_io import tfrecord_compression
from data.prepare import prepared_dir, read_manifest
from data.spec import DataSpec
from export import figures, vertex_env
from export.formats import RUNTIME_FORMATS

REPORT_FILE = "report.html"
# Records read per split for the class counts and the length histogram (the manifest's counts
# are exact; past this many the figures say they are of the first records).
MAX_RECORDS_READ = 200_000
HEADLINE = ("loss", "accuracy", "macro_f1", "micro_f1", "auc", "ece")
# The export result's keys, in the order and with the words a person reads them in.
EXPORT_ROWS = (
    ("layout", "layout"), ("saved_model", "SavedModel"), ("version", "version"),
    ("signatures", "signatures"), ("verified", "verified in a clean process"),
    ("checked", "signatures checked"), ("saved_model_max_diff", "SavedModel max |diff| vs the model"),
    ("warmup_requests", "warmup requests"), ("warmup_replayed", "warmup requests replayed"),
    ("mc_samples", "MC dropout samples (uncertainty)"),
    ("weights", "per-gate weights"), ("checkpoint", "checkpoint exported"),
) + tuple(row for runtime_format in RUNTIME_FORMATS.values() for row in runtime_format.report_rows)
SECTIONS = ("summary", "curves", "evaluation", "data", "throughput", "export", "config")


def write_report(model_dir: str, exported: Optional[Dict[str, object]] = None) -> str:
    """Writes `<model_dir>/report.html` (and a copy beside a Vertex AI model); returns its path.

    exported: the export result to show (default: metrics.json's "export"); `python -m export`
      passes the version it just wrote.
    """
    facts = gather(model_dir, exported)
    page = render(facts)
    path = tf.io.gfile.join(model_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    export = facts["export"]
    if export.get("layout") == "vertex" and export.get("saved_model"):
        tf.io.gfile.copy(path, tf.io.gfile.join(str(export["saved_model"]), REPORT_FILE), overwrite=True)
    return path


def try_write_report(model_dir: str, exported: Optional[Dict[str, object]] = None) -> Optional[str]:
    """`write_report`, but a failure is logged and gives None: it comes after the model and
    metrics.json are written, and must not fail the run that wrote them."""
    try:
        return write_report(model_dir, exported)
    except Exception as error:  # noqa: BLE001 - see the docstring
        logging.warning("run report not written: %s (%s)", error, type(error).__name__)
        return None


# Reading the model dir ---------------------------------------------------------------------

def gather(model_dir: str, exported: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Everything the page shows, read from `model_dir` (missing files give empty parts)."""
    metrics = _read_json(tf.io.gfile.join(model_dir, "metrics.json"))
    spec = DataSpec.load(model_dir)
    manifest = read_manifest(model_dir) or {}
    root = vertex_env.tensorboard_dir() or model_dir
    return {
        "model_dir": model_dir,
        "metrics": metrics,
        "config": _read_json(tf.io.gfile.join(model_dir, "config.json")),
        "manifest": manifest,
        "spec": spec,
        "train": read_scalars(tf.io.gfile.join(root, "train")),
        "splits": split_contents(model_dir, manifest, spec) if spec is not None else {},
        "export": dict(exported if exported is not None else metrics.get("export") or {}),
    }


def _read_json(path: str) -> dict:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def read_scalars(folder: str) -> Dict[str, List]:
    """{tag: [(step, value)]} of the scalar summaries in `folder`'s event files, by step."""
    values: Dict[str, List] = {}
    for path in sorted(tf.io.gfile.glob(tf.io.gfile.join(folder, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype in (tf.float32.as_datatype_enum,
                                                                       tf.float64.as_datatype_enum):
                    array = tf.make_ndarray(value.tensor)
                    if array.size == 1:
                        values.setdefault(value.tag, []).append((int(event.step), float(array)))
                elif value.HasField("simple_value"):
                    values.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return {tag: figures.series_of(series) for tag, series in values.items()}


def split_contents(model_dir: str, manifest: dict, spec: DataSpec) -> Dict[str, Dict[str, object]]:
    """Per prepared split: {"lengths": int array, "class_counts": [C] ints, "read": records read}."""
    out = {}
    folder = prepared_dir(model_dir)
    for split, entry in manifest.get("splits", {}).items():
        files = [tf.io.gfile.join(folder, name) for name in entry.get("files", [])]
        files = [path for path in files if tf.io.gfile.exists(path)]
        if files:
            out[split] = _read_split(files, spec)
    return out


def _read_split(files: Sequence[str], spec: DataSpec) -> Dict[str, object]:
    context = {"length": tf.io.FixedLenFeature([], tf.int64)}
    sequence = {}
    if spec.target_kind == "label":
        context["label"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    elif spec.target_kind == "labels":
        context["labels"] = tf.io.VarLenFeature(tf.string)
    else:
        sequence["tags"] = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)

    def parse(serialized):
        ctx, lists, _ = tf.io.parse_sequence_example(serialized, context_features=context,
                                                     sequence_features=sequence)
        targets = {"label": lambda: ctx["label"], "labels": lambda: ctx["labels"].values,
                   "tags": lambda: tf.reshape(lists["tags"], [-1])}[spec.target_kind]()
        return ctx["length"], targets

    dataset = (tf.data.TFRecordDataset(list(files), compression_type=tfrecord_compression(files[0]))
               .take(MAX_RECORDS_READ)
               .batch(4096).map(parse))
    lengths, index = [], {label.encode("utf-8"): i for i, label in enumerate(spec.labels)}
    counts = np.zeros(len(spec.labels), np.int64)
    for batch_lengths, targets in dataset.as_numpy_iterator():
        lengths.append(batch_lengths)
        names, numbers = np.unique(targets, return_counts=True)
        for name, number in zip(names, numbers):
            if name in index:  # b"" is a padded tag
                counts[index[name]] += number
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    return {"lengths": lengths, "class_counts": counts.tolist(), "read": int(len(lengths))}


# The page -----------------------------------------------------------------------------------

def render(facts: Dict[str, object]) -> str:
    """The HTML page of `gather`'s facts."""
    metrics, config = facts["metrics"], facts["config"]
    train_config = config.get("train", {})
    body = [
        f"<h1>Run report</h1><p class='sub'>{_e(facts['model_dir'])} &middot; written "
        f"{_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}</p>",
        _nav(),
        _section("summary", "Summary", _summary(metrics)),
        _section("curves", "Learning curves", _curves(facts, train_config)),
        _section("evaluation", "Final evaluation", _evaluation(metrics)),
        _section("data", "Data", _data(facts)),
        _section("throughput", "Throughput", _throughput(facts)),
        _section("export", "Export", _export(facts["export"])),
        _section("config", "Config", _config(config)),
    ]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Run report: {_e(facts['model_dir'])}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       background: #f6f7f9; margin: 0; }
main { max-width: 800px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 0; } h2 { font-size: 18px; border-bottom: 1px solid #ddd;
     padding-bottom: 4px; margin-top: 32px; } h3 { font-size: 15px; margin: 20px 0 6px; }
.sub, .note { color: #666; } nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f0f2f5; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
code { background: #f0f2f5; padding: 0 3px; border-radius: 3px; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _nav() -> str:
    return "<nav>" + "".join(f"<a href='#{name}'>{name}</a>" for name in SECTIONS) + "</nav>"


def _section(name: str, title: str, body: str) -> str:
    return f"<section id='{name}'><h2>{_e(title)}</h2>{body}</section>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: ""}[value]
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _image(png: str, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{png}'>"


def _note(text: str) -> str:
    return f"<p class='note'>{_e(text)}</p>"


def _summary(metrics: dict) -> str:
    if not metrics:
        return _note("No metrics.json: the run has not finished.")
    rows = [(f"{split} {key}", metrics[split][key]) for split in ("eval", "test") if split in metrics
            for key in HEADLINE + ("examples",) if key in metrics[split]]
    rows += [("steps", metrics.get("steps")), ("stopped early", metrics.get("stopped_early")),
             ("train time (this run)", f"{metrics.get('train_seconds', 0.0):.1f} s"),
             ("best checkpoint", metrics.get("best_checkpoint"))]
    best = metrics.get("best")
    if best:
        rows.append(("best " + best["metric"], f"{best['value']:.4f} at step {best['step']}"))
    return _table(("", "value"), rows)


def _curves(facts: dict, train_config: dict) -> str:
    metrics = facts["metrics"]
    history = metrics.get("history") or []
    metric = (metrics.get("best") or {}).get("metric") or train_config.get("early_stopping_metric", "loss")
    eval_loss = [(h["step"], h["loss"]) for h in history if "loss" in h]
    eval_metric = [(h["step"], h[metric]) for h in history if metric in h]
    best_step = (metrics.get("best") or {}).get("step") if history else None
    train_loss = facts["train"].get("loss", [])
    if not train_loss and not eval_loss:
        return _note("No train summaries or evaluations to draw.")
    text = ("Train loss as logged every `log_step_count_steps` steps (the mean of each chunk); "
            f"eval loss and {metric} at each evaluation; the dashed line is the best checkpoint, "
            "the one exported.")
    if not history:
        text = ("No evaluation split: the run trained on every record and kept its last weights "
                f"(step {metrics.get('steps', '?')}). Train loss as logged every "
                "`log_step_count_steps` steps.")
    return _note(text) + _image(figures.learning_curves(train_loss, eval_loss, metric, eval_metric, best_step),
                                "learning curves")


def _evaluation(metrics: dict) -> str:
    details = metrics.get("predictions")
    if not details:
        return _note("No eval or test split: nothing was evaluated at the end.")
    split, labels = details["split"], details["labels"]
    result = metrics.get(split, {})
    parts = [_note(f"The exported weights on the {split} split ({result.get('examples', '?')} "
                   f"examples).")]
    confusion = np.asarray(details["confusion"])
    if confusion.ndim == 2:
        parts.append("<h3>Confusion matrix</h3>" + _image(figures.confusion_matrix(confusion, labels),
                                                          "confusion matrix"))
        support = confusion.sum(axis=1)
    else:  # multilabel: [C, 2, 2] (true, predicted) per label
        support = confusion[:, 1, :].sum(axis=1)
    bins = details.get("reliability")
    if bins:
        parts.append("<h3>Reliability</h3>" + _note(
            f"Top-class confidence in {details.get('ece_bins', len(bins['count']))} equal bins; the "
            f"expected calibration error (ECE) is the example-weighted mean gap between each bin's "
            f"accuracy and its mean confidence.") + _image(figures.reliability_diagram(
                bins["count"], bins["confidence"], bins["accuracy"], result.get("ece")), "reliability diagram"))
    rows = [(label, result.get(f"precision/{label}"), result.get(f"recall/{label}"),
             result.get(f"f1/{label}"), int(count)) for label, count in zip(labels, support)]
    parts.append("<h3>Per class</h3>" + _table(("class", "precision", "recall", "F1", "support"), rows))
    return "".join(parts)


def _data(facts: dict) -> str:
    spec, manifest, splits = facts["spec"], facts["manifest"], facts["splits"]
    if spec is None:
        return _note("No data spec in the model dir.")
    entries = manifest.get("splits", {})
    parts = [_note(f"{spec.input_kind} input" + (f", {spec.feature_dim} features per step"
                                                 if spec.feature_dim else f", {len(spec.vocab):,} tokens")
                   + f"; {spec.target_kind} target, {len(spec.labels)} classes.")]
    rows = [(split, entry.get("num_records"), sum(entry.get("skipped", {}).values()), entry.get("truncated", 0))
            for split, entry in entries.items()]
    parts.append(_table(("split", "records", "skipped", "truncated"), rows))
    counted = {split: info for split, info in splits.items()}
    if counted:
        unit = "steps" if spec.target_kind == "tags" else "examples"
        rows = [[label] + [info["class_counts"][i] for info in counted.values()]
                for i, label in enumerate(spec.labels)]
        rows.append(["total"] + [sum(info["class_counts"]) for info in counted.values()])
        parts.append(f"<h3>Classes ({unit} per class and split)</h3>"
                     + _table(["class"] + list(counted), rows)
                     + _image(figures.class_counts({s: i["class_counts"] for s, i in counted.items()},
                                                   spec.labels), "class counts"))
        partial = [s for s, info in counted.items() if info["read"] < entries.get(s, {}).get("num_records", 0)]
        parts.append("<h3>Lengths</h3>" + _image(
            figures.length_histogram({s: i["lengths"] for s, i in counted.items()}), "length histogram"))
        if partial:
            parts.append(_note(f"Counts and lengths of {', '.join(partial)}: the first "
                               f"{MAX_RECORDS_READ:,} records."))
    if spec.length_quantiles:
        parts.append(_note("Training lengths at the 0, 10, ..., 100th percentiles: "
                           + ", ".join(map(str, spec.length_quantiles)) + "."))
    padding = facts["train"].get("padding_share", [])
    if padding:
        parts.append(_note(f"Padding: {100 * np.mean([v for _, v in padding]):.1f}% of the steps in "
                           f"training batches (the mean over the run's logged chunks)."))
    skipped = [(split, reason, count) for split, entry in entries.items()
               for reason, count in sorted(entry.get("skipped", {}).items())]
    parts.append("<h3>Skipped records</h3>" + (_table(("split", "reason", "records"), skipped) if skipped
                                               else _note("None (a bad record stops the run unless "
                                                          "--skip-bad-records).")))
    return "".join(parts)


def _throughput(facts: dict) -> str:
    metrics, train = facts["metrics"], facts["train"]
    rows = [("sequences/s", metrics.get("sequences_per_second")),
            ("real tokens/s", metrics.get("tokens_per_second")),
            ("train time (this run)", f"{metrics.get('train_seconds', 0.0):.1f} s"),
            ("steps trained (this run)", metrics.get("trained_steps_this_run"))]
    parts = [_note("Training only (evaluation and checkpoints between chunks are not counted); the "
                   "first chunk, which traces and compiles, is left out of the overall rates."),
             _table(("", "value"), [row for row in rows if row[1] is not None])]
    if len(train.get("sequences_per_second", [])) > 1:
        parts.append(_image(figures.throughput(train["sequences_per_second"],
                                               train.get("tokens_per_second", [])), "throughput"))
    return "".join(parts)


def _export(export: dict) -> str:
    if not export:
        return _note("Nothing exported (export_formats was empty).")
    rows = []
    for key, name in EXPORT_ROWS:
        if key in export:
            value = export[key]
            if key.endswith("_bytes") and isinstance(value, (int, float)):
                value = f"{value / 1024:,.1f} KiB"
            elif key == "version":
                value = str(value)
            rows.append((name, value))
    known = {key for key, _ in EXPORT_ROWS}
    rows += [(key, value) for key, value in sorted(export.items()) if key not in known]
    return _table(("", "value"), rows)


def _config(config: dict) -> str:
    if not config:
        return _note("No config.json.")
    parts = []
    for section, values in config.items():
        rows = []
        for key, value in sorted(values.items()):
            if isinstance(value, (list, tuple)) and len(value) > 6:
                value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value[:6]) + ", ..."
            rows.append((key, value))
        parts.append(f"<details><summary>{_e(section)} ({len(rows)} fields)</summary>"
                     f"{_table(('field', 'value'), rows)}</details>")
    return "".join(parts)
