"""Statistics of the training split that go into the `DataSpec`.

`TrainStats.add` sees each valid training record once, in file order, as it is read (the eval
hold-out is drawn only once the count is known); `remove` then takes the held-out records' own
statistics back out, so the results are over the training split alone: the per-feature mean
and std over real steps, label counts, length quantiles and token counts. Only the held-out
records are read a second time.
"""

from __future__ import annotations

import collections
from typing import AbstractSet, Sequence, Tuple

import numpy as np

from data.records import Example

QUANTILES = tuple(range(0, 101, 10))


class TrainStats:
    """Streaming statistics over training examples."""

    def __init__(self):
        self.label_counts = collections.Counter()  # class string -> examples carrying it
        self.lengths = []  # int per example, in `add` order
        self.token_counts = collections.Counter()
        self._n = 0  # real steps
        self._mean = None  # float64 [D]
        self._m2 = None  # float64 [D], sum of squared deviations from the mean

    def add(self, example: Example) -> None:
        self.lengths.append(example.length)
        self.label_counts.update(example.target_labels())
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

    def remove(self, part: "TrainStats", indices: AbstractSet[int]) -> None:
        """Takes out `part`: the statistics of the examples added at `indices` (0-based)."""
        self.lengths = [length for i, length in enumerate(self.lengths) if i not in indices]
        for mine, theirs in ((self.label_counts, part.label_counts),
                             (self.token_counts, part.token_counts)):
            mine.subtract(theirs)
            for key in [key for key, count in mine.items() if count <= 0]:
                del mine[key]
        if part._mean is None:
            return
        rest = self._n - part._n
        if rest <= 0:
            self._n, self._mean, self._m2 = 0, None, None
            return
        # Chan's update solved for the rest: m2 = m2_rest + m2_part + delta^2 n_rest n_part / n.
        mean = (self._n * self._mean - part._n * part._mean) / rest
        delta = part._mean - mean
        m2 = self._m2 - part._m2 - delta ** 2 * (rest * part._n / self._n)
        self._n, self._mean, self._m2 = rest, mean, np.maximum(m2, 0.0)

    @property
    def num_examples(self) -> int:
        return len(self.lengths)

    def class_counts(self, labels: Sequence[str]) -> Tuple[int, ...]:
        """Examples per class, in the order of `labels` (the spec's class list)."""
        return tuple(int(self.label_counts.get(label, 0)) for label in labels)

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
