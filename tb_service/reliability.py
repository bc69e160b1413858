"""How far a film is from the population the chest screen was validated on.

The abnormality model exports its pooled penultimate features (ONNX output ``embedding``).
:class:`PopulationDistance` holds one mean per training source and a shared, shrunk precision
matrix fitted on the training films' embeddings (Mahalanobis distance with a tied covariance,
the nearest source counting), and a limit: a high quantile of the validation films' distances.
:meth:`PopulationDistance.distance` reports the distance in units of that limit, so above 1.0
the film is outside what was validated (``shared.contracts.screening.assess_reliability``).

The file (``population.npz`` beside ``model.onnx``) is named in the card's ``reliability``
section with its sha256, and refused when the hash does not match. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.model import ModelIntegrityError, OnnxModel, file_sha256

EMBEDDING = "embedding"
FAR = 1e6


@dataclass(frozen=True)
class PopulationDistance:
    """Nearest-source Mahalanobis distance (tied covariance), in units of ``limit``."""

    means: NDArray[np.float64]  # (G, D): one mean per training source
    precision: NDArray[np.float64]  # (D, D): inverse of the shrunk, source-centred covariance
    limit: float  # raw distance at ``quantile`` of the validation films
    quantile: float
    groups: tuple[str, ...] = ()

    def raw(self, emb: NDArray[Any]) -> NDArray[np.float64]:
        """Distance to the nearest source mean (not scaled), one per row of ``emb``."""
        z = np.atleast_2d(np.asarray(emb, np.float64))
        if z.shape[1] != self.means.shape[1]:
            raise ValueError(f"embedding has {z.shape[1]} features, expected {self.means.shape[1]}")
        d = z[:, None, :] - self.means[None, :, :]  # (N, G, D)
        m = np.einsum("ngd,de,nge->ng", d, self.precision, d)
        out: NDArray[np.float64] = np.sqrt(np.maximum(m.min(axis=1), 0.0))
        return out

    def distance(self, emb: NDArray[Any]) -> NDArray[np.float64]:
        """Distance in units of the limit: > 1.0 is outside the validated population. A
        non-finite embedding is as far as :data:`FAR` (a finite number, so it serialises)."""
        raw = self.raw(emb)
        out: NDArray[np.float64] = np.where(np.isfinite(raw), raw / self.limit, FAR)
        return out

    def position(self, emb: NDArray[Any]) -> NDArray[np.float64]:
        """Each row of ``emb`` in the whitened coordinates of the tied covariance, in units of
        the limit: ``L^T e / limit`` with ``precision = L L^T``. The Euclidean distance of two
        positions is their Mahalanobis distance in units of the limit, so a reader holding a
        site's mean position measures a film against that site exactly as :meth:`distance`
        measures it against a training source (the gateway does, for adopted validation
        runs). A non-finite embedding gives non-finite positions."""
        z = np.atleast_2d(np.asarray(emb, np.float64))
        lower = np.linalg.cholesky(self.precision)
        out: NDArray[np.float64] = (z @ lower) / self.limit
        return out

    def save(self, path: Path) -> None:
        np.savez(
            path,
            means=self.means,
            precision=self.precision,
            limit=np.float64(self.limit),
            quantile=np.float64(self.quantile),
            groups=np.array(self.groups, dtype=str),
        )

    @classmethod
    def load(cls, path: Path) -> PopulationDistance:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                means=np.asarray(z["means"], np.float64),
                precision=np.asarray(z["precision"], np.float64),
                limit=float(z["limit"]),
                quantile=float(z["quantile"]),
                groups=tuple(str(g) for g in z["groups"]),
            )


def load_population(model: OnnxModel) -> PopulationDistance | None:
    """The model's population file when its card names one (sha256 checked), else None."""
    section = (model.card.model_extra or {}).get("reliability")
    if not isinstance(section, dict) or not section.get("file"):
        return None
    path = model.folder / str(section["file"])
    actual = file_sha256(path)
    if actual != section.get("sha256"):
        raise ModelIntegrityError(
            f"{path}: sha256 {actual} does not match the card's {section.get('sha256')}"
        )
    return PopulationDistance.load(path)
