"""Balanced mini-batches: every batch holds the same number of images from each
(source, label) cell, so within a batch the source carries no information about the label
(and, trained on one source, each label weighs the same). TensorFlow-free."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass
class BalancedSampler:
    """Batches of ``batch`` indices drawn evenly from the cells of (source, label).

    Each cell is walked through a fresh permutation and recycled when exhausted (small cells
    repeat more often), so an epoch of ``len(source) // batch`` steps sees every image of the
    largest cell about ``cells`` / ``batch`` x its share. ``batch`` must be a multiple of the
    number of cells."""

    source: NDArray[np.str_]
    label: NDArray[np.integer]
    batch: int = 32

    def __post_init__(self) -> None:
        keys = np.char.add(np.char.add(self.source.astype(str), "|"), self.label.astype(str))
        self.cells = {str(k): np.flatnonzero(keys == k) for k in np.unique(keys)}
        if self.batch % len(self.cells):
            raise ValueError(f"batch {self.batch} is not a multiple of {len(self.cells)} cells")
        self.per_cell = self.batch // len(self.cells)

    @property
    def steps(self) -> int:
        return max(1, len(self.source) // self.batch)

    def epoch(self, rng: np.random.Generator) -> Iterator[NDArray[np.int64]]:
        """One epoch's batches (each shuffled, cells in equal numbers)."""
        queues: dict[str, list[int]] = {k: [] for k in self.cells}
        for _ in range(self.steps):
            parts = []
            for k, members in self.cells.items():
                q = queues[k]
                while len(q) < self.per_cell:
                    q.extend(int(i) for i in rng.permutation(members))
                parts.extend(q[: self.per_cell])
                del q[: self.per_cell]
            yield rng.permutation(np.array(parts, np.int64))
