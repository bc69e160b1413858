"""The pectoral muscle of an MLO view, found on the working image (chest wall on the left,
so the muscle is the bright triangle in the upper-left, posterior corner). CC views show no
muscle worth masking (:func:`muscle_of_view` returns an empty mask for them).

Per row of the upper part of the breast, the strongest bright-to-dark step going away from
the chest wall (a horizontal Sobel derivative of the smoothed image, away from the skin
line) is an edge candidate; a robust line fit (``cv2.fitLine``, Huber distance) through the
candidates (after RANSAC drops the edges of tissue below the muscle) is the muscle's
border. It is accepted only when it runs as a pectoral border
runs (from the top edge down towards the chest wall), most candidates lie on it, the
triangle it cuts off is a plausible share of the breast and is brighter than the tissue just
beyond the line; otherwise no muscle is reported (an empty mask: nothing is hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

TOP_SHARE = 0.7  # rows searched: the upper 70% of the breast
MIN_AREA, MAX_AREA = 0.01, 0.45  # the triangle's share of the breast
MIN_CONTRAST = 8.0  # gray levels (8-bit) between the muscle and the band beyond its border
MIN_INLIERS = 0.35  # share of the edge candidates on the border (the rest: tissue below it)
MIN_SPAN = 0.15  # the border's candidates span at least this share of the image height


@dataclass(frozen=True)
class Border:
    """The muscle's border in working pixels: x = slope * y + x_top."""

    slope: float
    x_top: float

    def x_at(self, y: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = self.slope * y + self.x_top
        return out


def muscle_of_view(
    work: NDArray[np.uint8], breast: NDArray[np.bool_], view: str
) -> NDArray[np.bool_]:
    """The pectoral muscle's pixels for an MLO view; all False for CC."""
    if view != "MLO":
        return np.zeros(breast.shape, dtype=bool)
    return pectoral_mask(work, breast)


def pectoral_mask(work: NDArray[np.uint8], breast: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The pectoral triangle of an oriented MLO working image; empty when none is found."""
    empty = np.zeros(breast.shape, dtype=bool)
    border = find_border(work, breast)
    if border is None:
        return empty
    h, w = breast.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.asarray(breast & (xx < border.x_at(yy.astype(np.float64))), dtype=bool)


def _candidates(smooth: NDArray[np.float32], breast: NDArray[np.bool_]) -> NDArray[np.float32]:
    h = breast.shape[0]
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=5)
    # Away from the skin line: the breast's own edge against the zeroed background is the
    # strongest step of all.
    k = max(3, (h // 40) | 1)
    inner = cv2.erode(breast.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    rows = np.flatnonzero(breast.any(axis=1))
    if rows.size == 0:
        return np.zeros((0, 2), np.float32)
    y0, y1 = int(rows[0]), int(rows[0] + TOP_SHARE * (rows[-1] - rows[0]))
    scale = float(np.percentile(np.abs(gx[inner]), 90)) if inner.any() else 0.0
    ys = np.arange(y0, y1 + 1, 2)
    band = inner[ys]
    width = band.shape[1]
    first = np.argmax(band, axis=1)
    last = width - 1 - np.argmax(band[:, ::-1], axis=1)
    lo, hi = first + 2, (first + 0.8 * (last - first)).astype(np.int64)
    cols = np.arange(width)[None, :]
    seg = np.where(band & (cols >= lo[:, None]) & (cols < hi[:, None]), gx[ys], 0.0)
    at = np.argmin(seg, axis=1)
    step = seg[np.arange(len(ys)), at]
    keep = (band.sum(axis=1) >= 8) & (hi > lo) & (step < -max(scale, 1e-3))
    return np.stack([at[keep], ys[keep]], axis=1).astype(np.float32).reshape(-1, 2)


def _consensus(pts: NDArray[np.float32], tol: float, tries: int = 300) -> NDArray[np.bool_]:
    """RANSAC with a fixed seed: the candidates within ``tol`` of the line through two of
    them that most candidates lie near, among lines running as a pectoral border runs (x
    falling as y grows). Tissue edges below the muscle are outliers, not a pull on the fit."""
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(pts), (2, tries))
    (xa, ya), (xb, yb) = pts[i].T, pts[j].T
    dy = yb - ya
    ok = np.abs(dy) >= 2
    slope = np.where(ok, (xb - xa) / np.where(ok, dy, 1), 0.0)
    ok &= slope < 0
    if not ok.any():
        return np.zeros(len(pts), dtype=bool)
    slope, x0 = slope[ok], (xa - slope * ya)[ok]
    dist = np.abs(pts[None, :, 0] - (slope[:, None] * pts[None, :, 1] + x0[:, None]))
    near = dist <= tol
    out: NDArray[np.bool_] = near[int(np.argmax(near.sum(axis=1)))]
    return out


def find_border(work: NDArray[np.uint8], breast: NDArray[np.bool_]) -> Border | None:
    """The pectoral border line, or None where the image shows no plausible muscle."""
    h, w = breast.shape
    if h < 32 or w < 16 or breast.sum() < 256:
        return None
    sigma = max(1.0, h / 128.0)
    smooth = np.asarray(cv2.GaussianBlur(work.astype(np.float32), (0, 0), sigma), np.float32)
    pts = _candidates(smooth, breast)
    if len(pts) < 8:
        return None
    tol = max(4.0, h / 80.0)
    inliers = _consensus(pts, tol)
    if inliers.sum() < max(8, MIN_INLIERS * len(pts)):
        return None
    on = pts[inliers]
    if float(np.ptp(on[:, 1])) < MIN_SPAN * h:  # a border is long, not a few nearby steps
        return None
    # x as a function of y: fitLine gives a direction (vx, vy) and a point (x0, y0).
    vx, vy, x0, y0 = (float(v) for v in cv2.fitLine(on, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel())
    if abs(vy) < 1e-6:
        return None
    slope = vx / vy
    border = Border(slope, x0 - slope * y0)
    # A pectoral border leaves the top edge away from the chest wall and reaches the chest
    # wall (x = 0) further down: x falls as y grows.
    top = int(np.flatnonzero(breast.any(axis=1))[0])
    x_top = float(border.x_at(np.array([float(top)]))[0])
    if slope >= 0 or x_top <= 0.05 * w:
        return None
    yy, xx = np.mgrid[0:h, 0:w]
    line_x = border.x_at(yy.astype(np.float64))
    muscle = breast & (xx < line_x)
    share = float(muscle.sum()) / float(breast.sum())
    if not MIN_AREA <= share <= MAX_AREA:
        return None
    band = breast & (xx >= line_x) & (xx < line_x + max(8.0, w / 12.0))
    band &= yy <= (-border.x_top / slope if slope < 0 else h)  # beside the muscle, not below
    if not band.any():
        return None
    contrast = float(smooth[muscle].mean()) - float(smooth[band].mean())
    return border if contrast >= MIN_CONTRAST else None
