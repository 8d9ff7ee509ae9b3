"""The run report's figures, each a PNG returned as base64 text for an <img> data URI.

Matplotlib's object API (`matplotlib.figure.Figure`, drawn by the Agg canvas): no pyplot, so no
global figure state and no display is ever needed. Every function takes plain Python/NumPy
values that `export/run_report.py` read from the model dir.
"""

from __future__ import annotations

import base64
import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Series = Sequence[Tuple[int, float]]  # (step, value) pairs, steps increasing
WIDTH = 7.5  # inches; at DPI 100 the report's 750-pixel column
DPI = 100


def _figure(height: float = 3.4, columns: int = 1):
    from matplotlib.figure import Figure  # here: the report is the one user of matplotlib

    figure = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, columns) if columns > 1 else figure.subplots()
    return figure, axes


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def learning_curves(train_loss: Series, eval_loss: Series, metric: str, eval_metric: Series,
                    best_step: Optional[int]) -> str:
    """Train and eval loss against steps (left), the early-stopping metric when it is not the
    loss (right); the best checkpoint's step as a dashed line on both."""
    separate = metric != "loss" and len(eval_metric) > 0
    figure, axes = _figure(columns=2 if separate else 1)
    loss_axes, metric_axes = (axes[0], axes[1]) if separate else (axes, None)
    if train_loss:
        loss_axes.plot(*zip(*train_loss), label="train loss", color="tab:blue", linewidth=1.2,
                       marker="o" if len(train_loss) < 30 else None, markersize=2.5)
    if eval_loss:
        loss_axes.plot(*zip(*eval_loss), label="eval loss", color="tab:orange", marker="o",
                       markersize=2.5, linewidth=1.2)
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss")
    if metric_axes is not None:
        metric_axes.plot(*zip(*eval_metric), color="tab:green", marker="o", markersize=2.5,
                         linewidth=1.2, label=f"eval {metric}")
        metric_axes.set_xlabel("step")
        metric_axes.set_ylabel(metric)
    for target in [a for a in (loss_axes, metric_axes) if a is not None]:
        if best_step is not None and best_step >= 0:
            target.axvline(best_step, color="tab:red", linestyle="--", linewidth=1,
                           label=f"best checkpoint (step {best_step})")
        target.grid(alpha=0.3)
        if target.get_legend_handles_labels()[0]:
            target.legend(fontsize=8)
    return _png(figure)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Counts, shaded by the share of each true class (row), labels on both axes."""
    counts = np.asarray(matrix, np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(7.5, max(3.5, 0.45 * len(labels) + 2.0))
    figure, axes = _figure(height=size)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, [str(label) for label in labels], rotation=45 if len(labels) > 6 else 0,
                    ha="right" if len(labels) > 6 else "center", fontsize=8)
    axes.set_yticks(ticks, [str(label) for label in labels], fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(labels) <= 30:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                          color="white" if shares[row, column] > 0.5 else "black")
    return _png(figure)


def reliability_diagram(count: Sequence[int], confidence: Sequence[float], accuracy: Sequence[float],
                        ece: Optional[float]) -> str:
    """Accuracy against mean confidence per equal-width bin (bars, their width the bin) beside
    the diagonal of perfect calibration; the share of examples per bin beside it."""
    count = np.asarray(count, np.float64)
    bins = len(count)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    figure, (top, bottom) = _figure(height=3.4, columns=2)  # diagram left, bin shares right
    filled = count > 0
    top.bar(centers[filled], np.asarray(accuracy)[filled], width=1.0 / bins, edgecolor="black",
            linewidth=0.5, color="tab:blue", alpha=0.8, label="accuracy")
    top.plot(np.asarray(confidence)[filled], np.asarray(accuracy)[filled], "o", color="tab:orange",
             markersize=3, label="(mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_xlabel("confidence (top class probability)")
    top.set_ylabel("accuracy")
    top.set_title(f"ECE {ece:.4f}" if ece is not None else "reliability", fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(centers, count / max(count.sum(), 1.0), width=1.0 / bins, color="tab:gray",
               edgecolor="black", linewidth=0.5)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share of examples")
    return _png(figure)


def class_counts(counts: Dict[str, Sequence[int]], labels: Sequence[str]) -> str:
    """Examples per class, one bar group per class, one bar per split."""
    figure, axes = _figure(height=3.2)
    splits = list(counts)
    width = 0.8 / max(len(splits), 1)
    positions = np.arange(len(labels))
    for index, split in enumerate(splits):
        axes.bar(positions + (index - (len(splits) - 1) / 2) * width, counts[split], width=width,
                 label=split)
    axes.set_xticks(positions, [str(label) for label in labels], fontsize=8,
                    rotation=45 if len(labels) > 10 else 0)
    axes.set_ylabel("examples")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def length_histogram(lengths: Dict[str, np.ndarray], max_bins: int = 40) -> str:
    """Sequence lengths per split (steps, after truncation), each split's share per bin."""
    values = [v for v in lengths.values() if len(v)]
    low, high = (min(int(v.min()) for v in values), max(int(v.max()) for v in values)) if values else (0, 1)
    if high - low + 1 <= max_bins:
        edges = np.arange(low, high + 2) - 0.5  # one bin per length
    else:
        edges = np.linspace(low, high + 1, max_bins + 1)
    figure, axes = _figure(height=3.0)
    for split, array in lengths.items():
        if len(array):
            axes.hist(array, bins=edges, weights=np.full(len(array), 1.0 / len(array)),
                      histtype="step", linewidth=1.5, label=f"{split} ({len(array)})")
    axes.set_xlabel("length (steps)")
    axes.set_ylabel("share of sequences")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _png(figure)


def throughput(sequences: Series, tokens: Series) -> str:
    """Training sequences/s and real tokens/s against steps, as the train summaries logged them."""
    figure, axes = _figure(height=2.8, columns=2)
    for target, series, name in ((axes[0], sequences, "sequences/s"), (axes[1], tokens, "real tokens/s")):
        if series:
            target.plot(*zip(*series), color="tab:blue", linewidth=1.2)
        target.set_xlabel("step")
        target.set_ylabel(name)
        target.set_ylim(bottom=0)
        target.grid(alpha=0.3)
    return _png(figure)


def series_of(values: List[Tuple[int, float]]) -> List[Tuple[int, float]]:
    """Sorted by step, one value per step (the last written wins: a resumed run rewrites)."""
    return sorted(dict(values).items())
