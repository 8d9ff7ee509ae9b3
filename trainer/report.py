"""What a person reads at the end: `metrics.json` in the model dir and a final console table.

`metrics.json` also carries what the run report (`export/run_report.py`, `report.html`) draws
and the scalars cannot: the final split's confusion matrix and reliability bins.
"""

from __future__ import annotations

import json
from typing import Dict

import numpy as np
import tensorflow as tf

METRICS_FILE = "metrics.json"
HEADLINE = ("loss", "accuracy", "macro_f1", "ece")


def format_metrics(result: Dict[str, float]) -> str:
    return " ".join(f"{key} {result[key]:.4f}" for key in HEADLINE if key in result)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def prediction_details(split: str, metrics) -> Dict[str, object]:
    """What the final evaluation of `split` saw, beyond its scalars: {"split", "labels",
    "confusion" (true rows x predicted columns; multilabel: [C][2][2]), "reliability"
    (`EvalMetrics.reliability`, or None), "ece_bins"}."""
    return {"split": split, "labels": list(metrics.label_names),
            "confusion": metrics.confusion_matrix().tolist(), "reliability": metrics.reliability(),
            "ece_bins": metrics.num_bins}


def write_metrics(model_dir: str, final: Dict[str, object]) -> str:
    path = tf.io.gfile.join(model_dir, METRICS_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(_jsonable(final), f, indent=1, sort_keys=True)
    return path


def print_final_table(final: Dict[str, object], model_dir: str) -> None:
    rows = []
    for split in ("eval", "test"):
        if split in final:
            for key in HEADLINE:
                if key in final[split]:
                    rows.append((f"{split} {key}", f"{final[split][key]:.4f}"))
            rows.append((f"{split} examples", str(final[split]["examples"])))
    rows += [
        ("steps", str(final["steps"])),
        ("stopped early", "yes" if final["stopped_early"] else "no"),
        ("train time (this run)", f"{final['train_seconds']:.1f} s"),
        ("sequences/s", f"{final['sequences_per_second']:.1f}"),
        ("real tokens/s", f"{final['tokens_per_second']:.1f}"),
        ("model dir", model_dir),
        ("best checkpoint", str(final["best_checkpoint"])),
    ]
    if final.get("report"):
        rows.append(("report", str(final["report"])))
    for key, value in final.get("export", {}).items():
        rows.append((f"export {key}", str(value)))
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 3 + max(len(value) for _, value in rows))
    print(line)
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
    print(line)
