"""Is a predicted lung mask plausible, and which box crops a film to its lung fields?

Pure functions on boolean masks (no model, no I/O), so that every rule has its own test:

* :func:`check_lung_mask`: two lungs means two large connected components, each holding a
  plausible share of the lung area, one left and one right of the image centre, both in the
  upper part of the film, together covering a plausible share of the image.
* :func:`box_with_margin`: the two lungs' joint bounding box grown by a margin on each side, so
  that the hila and mediastinum (between the lungs, always inside a box spanning both), the
  lung apices, the costophrenic angles and the retrocardiac region (the lower lobes behind the
  heart and the posterior recesses, which reach lower than the visible domes) stay in the crop.

The shares and positions are fractions of the mask's width and height, so a mask predicted on a
squashed square input gives the same answer as on the film itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
Problem = Literal[
    "not_two_lungs",  # not exactly two large components
    "unbalanced_lungs",  # one lung holds too small a share of the two
    "not_one_each_side",  # not one lung left and one right of the centre
    "vertical_position",  # a lung's centroid outside the expected band of the height
    "stray_mask",  # too much of the mask outside the two lungs
    "total_area",  # the lungs' share of the image implausibly small or large
]


@dataclass(frozen=True)
class LungMaskLimits:
    """What a plausible frontal chest film's lung mask looks like (fractions of the mask)."""

    # Components smaller than this share of the image are specks, not lungs.
    min_component_share: float = 0.01
    # Each of the two lungs holds at least this share of their joint area (the left lung is
    # the smaller one, the heart takes its place; 0.25 allows a partly opaque lung).
    min_lung_share: float = 0.25
    # The two lungs together, as a share of the image (a tightly collimated adult film reaches
    # ~0.6, a child's film with arms and abdomen ~0.12).
    min_total_share: float = 0.06
    max_total_share: float = 0.75
    # The two lungs hold at least this share of all mask pixels (the rest are stray blobs).
    min_main_share: float = 0.85
    # Each lung's centroid lies in this band of the image height (no upside-down film).
    centroid_y: tuple[float, float] = (0.15, 0.75)
    # Each lung's centroid lies this far inside the image on its side (fraction of width).
    centroid_x_edge: float = 0.08


@dataclass(frozen=True)
class LungMargin:
    """Growth of the lungs' joint box, as fractions of the box's width (sides) and height."""

    side: float = 0.08
    top: float = 0.06
    bottom: float = 0.12


@dataclass(frozen=True)
class LungMaskCheck:
    """The verdict on one mask: plausible or the problems found, and what was measured."""

    plausible: bool
    problems: tuple[Problem, ...]
    total_share: float  # all mask pixels / image pixels
    lung_shares: tuple[float, ...]  # each lung's share of the two lungs' area (left, right)
    box: Box | None  # joint bounding box of the (at most two) largest components


def check_lung_mask(mask: NDArray[np.bool_], limits: LungMaskLimits | None = None) -> LungMaskCheck:
    """Check a boolean lung mask (H, W) against ``limits``."""
    lim = limits or LungMaskLimits()
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool), dtype=np.uint8)
    if m.ndim != 2 or m.shape[0] < 8 or m.shape[1] < 8:
        raise ValueError(f"expected a 2-D mask of at least 8 x 8, got shape {m.shape}")
    h, w = m.shape
    total = float(m.sum())
    n, _labels, stats, centroids = cv2.connectedComponentsWithStats(m, connectivity=8)
    comps = sorted(
        (
            (int(stats[i, cv2.CC_STAT_AREA]), i)
            for i in range(1, n)
            if stats[i, cv2.CC_STAT_AREA] >= lim.min_component_share * h * w
        ),
        reverse=True,
    )
    main = [i for _, i in comps[:2]]
    # Left and right as the film is displayed: the lung drawn on the image's left first.
    main.sort(key=lambda i: float(centroids[i, 0]))
    box: Box | None = None
    if main:
        box = (
            min(int(stats[i, cv2.CC_STAT_LEFT]) for i in main),
            min(int(stats[i, cv2.CC_STAT_TOP]) for i in main),
            max(int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in main),
            max(int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]) for i in main),
        )
    areas = [float(stats[i, cv2.CC_STAT_AREA]) for i in main]
    joint = sum(areas)
    shares = tuple(round(a / joint, 4) for a in areas) if joint else ()
    problems: list[Problem] = []
    if len(main) != 2:
        problems.append("not_two_lungs")
    else:
        if min(shares) < lim.min_lung_share:
            problems.append("unbalanced_lungs")
        (lx, ly), (rx, ry) = (centroids[i] for i in main)
        lo_x, hi_x = lim.centroid_x_edge * w, (1.0 - lim.centroid_x_edge) * w
        if not (lo_x <= lx < w / 2.0 < rx <= hi_x):
            problems.append("not_one_each_side")
        lo_y, hi_y = lim.centroid_y[0] * h, lim.centroid_y[1] * h
        if not (lo_y <= ly <= hi_y and lo_y <= ry <= hi_y):
            problems.append("vertical_position")
        if joint < lim.min_main_share * total:
            problems.append("stray_mask")
    share = total / float(h * w)
    if not lim.min_total_share <= share <= lim.max_total_share:
        problems.append("total_area")
    return LungMaskCheck(
        plausible=not problems,
        problems=tuple(problems),
        total_share=round(share, 4),
        lung_shares=shares,
        box=box,
    )


def box_with_margin(box: Box, size: tuple[int, int], margin: LungMargin | None = None) -> Box:
    """``box`` grown by ``margin`` and clipped to an image of ``size`` (w, h)."""
    mg = margin or LungMargin()
    w, h = size
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        raise ValueError(f"empty box {box}")
    return (
        max(0, int(np.floor(x0 - mg.side * bw))),
        max(0, int(np.floor(y0 - mg.top * bh))),
        min(w, int(np.ceil(x1 + mg.side * bw))),
        min(h, int(np.ceil(y1 + mg.bottom * bh))),
    )


def scale_box(box: Box, src: tuple[int, int], dst: tuple[int, int]) -> Box:
    """A box in an image of size ``src`` (w, h) mapped onto one of size ``dst`` (outward)."""
    fx, fy = dst[0] / src[0], dst[1] / src[1]
    x0, y0, x1, y1 = box
    return (
        max(0, int(np.floor(x0 * fx))),
        max(0, int(np.floor(y0 * fy))),
        min(dst[0], int(np.ceil(x1 * fx))),
        min(dst[1], int(np.ceil(y1 * fy))),
    )
