"""The per-view record every mammography source is read into: mini-mias's
:class:`~bc_service.train.data.MiasCase` (image path, label, laterality, split, located lesions,
spread calcifications), plus what other sets also say: the patient, the view, the background
tissue or breast density, and each lesion's outline or mask. The training code reads only
the ``MiasCase`` fields, so a record of any source trains like a mini-mias case.

Paths are relative to the dataset root; lesion centres and radii are in pixels of the full
image (origin top-left), radius that of the circle of the lesion's area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bc_service.train.data import LABELS, Lesion, MiasCase

#: The lesion classes of mini-mias; the other sources' findings are mapped onto them.
ABNORMALITIES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")
VIEWS = ("CC", "MLO")
SIDES = ("L", "R")


class LayoutError(ValueError):
    """The folder is not in the layout the chosen source reads (says what is missing)."""


@dataclass
class SourceLesion(Lesion):
    outline: list[tuple[float, float]] = field(default_factory=list)  # (x, y), INbreast ROIs
    mask_path: str | None = None  # CBIS-DDSM ROI mask DICOM, relative to the root


@dataclass
class SourceCase(MiasCase):
    patient: str = ""
    view: str = "MLO"
    tissue: str | None = None  # mini-mias background tissue F / G / D
    density: int | None = None  # BI-RADS (ACR) breast density 1-4
    source: str = ""
    findings: list[str] = field(default_factory=list)  # the source's own words, per lesion


def worst(labels: list[str]) -> str:
    """The most severe of ``labels`` (normal < benign < malignant)."""
    return max(labels, key=LABELS.index) if labels else "normal"


def circle_of_mask(mask: NDArray[np.bool_]) -> tuple[int, int, int] | None:
    """(x, y, radius) of a binary lesion mask: its centroid and the radius of the circle of
    its area; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    radius = max(1, round(math.sqrt(ys.size / math.pi)))
    return round(float(xs.mean())), round(float(ys.mean())), radius


def circle_of_outline(
    points: list[tuple[float, float]], min_radius: int = 3
) -> tuple[int, int, int]:
    """(x, y, radius) of a closed outline: the centroid and equal-area radius of the polygon;
    a point or a line (calcification marks) gives its points' centre and ``min_radius``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    area = 0.0
    if len(pts) >= 3:
        x, y = pts[:, 0], pts[:, 1]
        cross = x * np.roll(y, -1) - np.roll(x, -1) * y
        area = 0.5 * float(cross.sum())
    if abs(area) < 1e-6:
        cx, cy = pts.mean(axis=0)
        spread = float(np.max(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy))) if len(pts) else 0.0
        return round(float(cx)), round(float(cy)), max(min_radius, round(spread))
    cx = float(((x + np.roll(x, -1)) * cross).sum()) / (6.0 * area)
    cy = float(((y + np.roll(y, -1)) * cross).sum()) / (6.0 * area)
    radius = max(min_radius, round(math.sqrt(abs(area) / math.pi)))
    return round(cx), round(cy), radius


def patient_splits(
    cases: list[SourceCase], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """patient → split, drawn per class of the patient's worst label (so each split holds
    every class the set has) with a fixed seed; both breasts and every view of a woman land
    in one split. ``fractions`` in split order, summing to 1."""
    worst_of: dict[str, str] = {}
    for c in cases:
        worst_of[c.patient] = worst([worst_of.get(c.patient, "normal"), c.label])
    rng = np.random.default_rng(seed)
    names = list(fractions)
    out: dict[str, str] = {}
    for label in LABELS:
        patients = sorted(p for p, w in worst_of.items() if w == label)
        rng.shuffle(patients)
        n = len(patients)
        # every split but the first gets its share, at least one patient when there are
        # enough of them; the first split takes the rest
        later = [max(1, round(fractions[s] * n)) if n >= len(names) else 0 for s in names[1:]]
        counts = [n - sum(later), *later]
        start = 0
        for name, count in zip(names, counts, strict=True):
            for p in patients[start : start + count]:
                out[p] = name
            start += count
    return out
