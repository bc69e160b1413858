"""The overlay a reader sees over a chest film: tb_service's low-resolution score map rendered
at display size, read at the effective operating point (:mod:`gateway.operating_point`).

The PNG covers the map's box (the lung crop) at the scale the film is shown at, its long side
at most ``max_side``: each cell's colour is its share of the score against the threshold (blue
below it, yellow to red above it, grey when the film is outside the validated population),
its alpha the cell's relative strength (:func:`shared.overlay.screen_palette`). It shows where
the model looked, not a lesion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.operating_point import EffectiveReading
from shared.contracts.common import CropBox
from shared.contracts.screening import Category, ScoreMap
from shared.overlay import encode_png, grid_levels, screen_palette

MAX_SIDE = 1024  # long side of the rendered film; the overlay is its crop part
MAX_ALPHA = 0.75


@dataclass(frozen=True)
class Overlay:
    png: bytes
    width: int
    height: int
    covers: CropBox  # the part of the ORIGINAL image (its pixels) the PNG lies over


def display_scale(width: int, height: int, max_side: int = MAX_SIDE) -> float:
    """The factor the film is shown at: 1, or less so that its long side is ``max_side``."""
    return min(1.0, max_side / float(max(width, height)))


def render(
    score_map: ScoreMap, score: float, reading: EffectiveReading, max_side: int = MAX_SIDE
) -> Overlay | None:
    """The overlay PNG of ``score_map`` for a film scoring ``score``; None when the map's box
    lies outside the image."""
    box = score_map.box
    x0, y0 = max(0, box.x0), max(0, box.y0)
    x1, y1 = min(score_map.image_width, box.x1), min(score_map.image_height, box.y1)
    if x1 <= x0 or y1 <= y0:
        return None
    f = display_scale(score_map.image_width, score_map.image_height, max_side)
    # Render the whole box, then keep the part inside the image (its geometry is the map's).
    bw, bh = (max(1, math.ceil((b - a) * f)) for a, b in ((box.x0, box.x1), (box.y0, box.y1)))
    levels = grid_levels(score_map.values, bw, bh)
    cx0, cy0 = round((x0 - box.x0) * f), round((y0 - box.y0) * f)
    cx1, cy1 = max(cx0 + 1, round((x1 - box.x0) * f)), max(cy0 + 1, round((y1 - box.y0) * f))
    levels = levels[cy0:cy1, cx0:cx1]
    trusted = reading.category != Category.outside_population
    palette = screen_palette(
        round(score, 2), round(reading.score_threshold, 4), trusted=trusted, max_alpha=MAX_ALPHA
    )
    height, width = levels.shape
    return Overlay(
        encode_png(levels, palette), int(width), int(height), CropBox(x0=x0, y0=y0, x1=x1, y1=y1)
    )
