"""Breast geometry on small arrays: the breast mask, chest-wall side, CC/MLO, optimal centers.

Everything here is numpy + OpenCV and works on a low-resolution copy of the image (long side
``MASK_SIDE``), so it costs a few milliseconds whatever the input size.

Orientation convention (documented in the card and the API): every view is mirrored, when
needed, so that the **chest wall lies on the image's left edge and the nipple points right**
(the way a left breast is displayed under the standard hanging protocol). Laterality follows
the standard display convention: a right breast is displayed with its chest wall on the right,
a left breast with its chest wall on the left (mini-mias follows it in 320 of its 322 images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

MASK_SIDE = 256

Side = Literal["left", "right"]


@dataclass(frozen=True)
class BreastMask:
    """Largest bright component of a low-resolution copy, and how it maps to the original."""

    mask: NDArray[np.bool_]  # (h, w) at low resolution
    scale: float  # original pixels per low-res pixel
    area_fraction: float  # breast share of the image
    threshold: int  # 8-bit threshold used


def downsample(gray8: NDArray[np.uint8], side: int = MASK_SIDE) -> tuple[NDArray[np.uint8], float]:
    h, w = gray8.shape
    scale = max(h, w) / float(side)
    if scale <= 1.0:
        return gray8, 1.0
    small: NDArray[np.uint8] = np.asarray(
        cv2.resize(
            gray8,
            (max(1, round(w / scale)), max(1, round(h / scale))),
            interpolation=cv2.INTER_AREA,
        ),
        dtype=np.uint8,
    )
    return small, scale


def breast_mask(gray8: NDArray[np.uint8], side: int = MASK_SIDE) -> BreastMask:
    """Threshold (Otsu, capped low so fatty tissue stays in), open, keep the largest component,
    fill its holes. Film labels and markers are separate components and drop out."""
    small, scale = downsample(gray8, side)
    blur = cv2.GaussianBlur(small, (5, 5), 0)
    otsu, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thr = int(max(8, min(otsu, 40)))
    binary = (blur > thr).astype(np.uint8)
    k = max(3, (min(small.shape) // 28) | 1)
    binary = np.asarray(cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((k, k), np.uint8)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        empty = np.zeros(small.shape, dtype=bool)
        return BreastMask(empty, scale, 0.0, thr)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (labels == largest).astype(np.uint8)
    # Fill holes: flood the background from the border of a 1-px padded copy.
    padded = np.pad(comp, 1)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    mask = comp.astype(bool) | holes
    return BreastMask(mask, scale, float(mask.mean()), thr)


def chest_wall_side(mask: NDArray[np.bool_]) -> tuple[Side, float]:
    """The side the breast leans against: where its centroid lies and which edge it touches.

    Returns the side and a confidence in [0.5, 1].
    """
    w = mask.shape[1]
    if not mask.any():
        return "left", 0.5
    xs = np.nonzero(mask)[1]
    cx = float(xs.mean()) / max(w - 1, 1)  # 0..1
    edge = max(1, w // 20)
    left_touch = float(mask[:, :edge].mean())
    right_touch = float(mask[:, -edge:].mean())
    score = (0.5 - cx) * 2.0 + (left_touch - right_touch)  # > 0: chest wall on the left
    side: Side = "left" if score > 0 else "right"
    conf = 0.5 + 0.5 * float(np.clip(abs(score) / 0.4, 0.0, 1.0))
    return side, conf


def bbox(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the mask, exclusive ends; the whole array when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def view_kind(
    mask_oriented: NDArray[np.bool_],
) -> tuple[Literal["CC", "MLO"], float, dict[str, Any]]:
    """CC or MLO from the shape of the breast, chest wall on the left (HEURISTIC, untrained:
    mini-mias has no CC views).

    An MLO view includes the pectoral muscle and the axilla: the breast stays wide right up
    to its top edge, and its furthest point (the nipple) lies in its lower half. A CC view is a
    half-disc: it tapers to a point at top and bottom and its furthest point is near mid-height.
    """
    x0, y0, x1, y1 = bbox(mask_oriented)
    m = mask_oriented[y0:y1, x0:x1]
    h, w = m.shape
    if h < 4 or w < 4:
        return "MLO", 0.5, {}
    widths = m.sum(axis=1).astype(np.float64)
    band = max(1, h // 25)
    top = float(widths[:band].mean() / max(widths.max(), 1.0))
    bottom = float(widths[-band:].mean() / max(widths.max(), 1.0))
    # Right-most extent per row: the nipple row.
    ext = np.where(m.any(axis=1), w - np.argmax(m[:, ::-1], axis=1), 0)
    nipple_row = float(np.argmax(ext)) / max(h - 1, 1)
    # Weights set by eye on mini-mias MLO views (5th percentile of top width 0.40) and on a
    # half-disc (top width ~0.23, nipple at mid-height); the bottom is often cut off on film.
    score = (top - 0.33) + 0.3 * (nipple_row - 0.5)
    kind: Literal["CC", "MLO"] = "MLO" if score > 0 else "CC"
    conf = 0.5 + 0.5 * float(np.clip(abs(score) / 0.2, 0.0, 1.0))
    return kind, conf, {"top_width": top, "bottom_width": bottom, "nipple_row": nipple_row}


def optimal_center(
    mask: NDArray[np.bool_], window: tuple[int, int]
) -> tuple[tuple[int, int], float]:
    """NYU-style optimal center: the (row, col) centre of a fixed (h, w) window that holds the
    most breast pixels, found with an integral image; ties go to the window nearest the
    chest wall (left) and the breast's vertical middle. Returns centre and breast coverage."""
    height, width = mask.shape
    wh, ww = min(window[0], height), min(window[1], width)
    integral = cv2.integral(mask.astype(np.uint8)).astype(np.int64)
    sums = (
        integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]
    )  # (H-wh+1, W-ww+1): window with top-left (y, x)
    best = sums.max()
    ys, xs = np.nonzero(sums >= best)
    rows = np.flatnonzero(mask.any(axis=1))
    mid = (rows[0] + rows[-1]) / 2.0 if rows.size else height / 2.0
    cy = ys + wh / 2.0
    order = np.lexsort((np.abs(cy - mid), xs))
    i = int(order[0])
    centre = (int(ys[i] + wh // 2), int(xs[i] + ww // 2))
    coverage = float(best) / float(max(mask.sum(), 1))
    return centre, coverage


def snap_into(mask: NDArray[np.bool_], point: tuple[int, int]) -> tuple[int, int]:
    """The mask pixel nearest to ``point`` (row, col); the point itself when inside."""
    r, c = point
    if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c]:
        return point
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return point
    i = int(np.argmin((ys - r) ** 2 + (xs - c) ** 2))
    return int(ys[i]), int(xs[i])
