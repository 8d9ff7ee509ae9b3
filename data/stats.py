"""Statistics of the training split that go into the `DataSpec`.

`TrainStats.add` sees each training example once (after the eval hold-out); the results are the
per-feature mean/std over real steps, label counts, length quantiles and token counts.
"""

from __future__ import annotations

import collections
from typing import Sequence, Tuple

import numpy as np

from data.records import Example

QUANTILES = tuple(range(0, 101, 10))


class TrainStats:
    """Streaming statistics over training examples.

    Args:
      labels: the class strings, in class-id order.
    """

    def __init__(self, labels: Sequence[str]):
        self.labels = tuple(labels)
        self._index = {label: i for i, label in enumerate(self.labels)}
        self.label_counts = np.zeros(len(self.labels), np.int64)
        self.lengths = []
        self.token_counts = collections.Counter()
        self._n = 0
        self._mean = None
        self._m2 = None

    def add(self, example: Example) -> None:
        self.lengths.append(example.length)
        for label in example.target_labels():
            self.label_counts[self._index[label]] += 1
        if example.tokens is not None:
            self.token_counts.update(example.tokens)
        if example.features is not None:
            self._add_steps(example.features.astype(np.float64))

    def _add_steps(self, x: np.ndarray) -> None:
        """x: float64 [T, D]. Chan et al.'s pairwise update: stable for long streams."""
        n_b, mean_b = len(x), x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self._mean is None:
            self._n, self._mean, self._m2 = n_b, mean_b, m2_b
            return
        total = self._n + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / total)
        self._m2 = self._m2 + m2_b + delta ** 2 * (self._n * n_b / total)
        self._n = total

    @property
    def num_examples(self) -> int:
        return len(self.lengths)

    def feature_mean_std(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Per-feature mean and (population) std over real steps; a constant feature gets 1.0."""
        if self._mean is None:
            return (), ()
        std = np.sqrt(self._m2 / self._n)
        constant = std <= 1e-7 * np.maximum(1.0, np.abs(self._mean))
        std = np.where(constant, 1.0, std)
        return tuple(float(v) for v in self._mean), tuple(float(v) for v in std)

    def length_quantiles(self) -> Tuple[int, ...]:
        """Lengths at the 0, 10, ..., 100th percentiles (11 ints)."""
        if not self.lengths:
            return ()
        return tuple(int(v) for v in np.percentile(self.lengths, QUANTILES, method="nearest"))
