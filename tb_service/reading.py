"""How a chest score is read: at the abnormality card's operating point (the category comes
from shared categorize), and with the low-resolution map of where the model looked.

The score map is the model's class-activation grid as it is (8 x 8 for chest-abnormality/1),
normalised by its own maximum, over the crop box in the uploaded image: the reader (the
gateway) renders it at display size, so no full-size picture is made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

from shared.contracts.common import CropBox
from shared.contracts.screening import OperatingPoint, ScoreMap
from shared.model import ModelCard, ModelCardError
from tb_service.heatmap import normalise_cam

# The card's score_threshold is 100 x threshold.abnormal, rounded to 4 places.
_TOLERANCE = 1e-3


def served_point(card: ModelCard, threshold: float) -> OperatingPoint:
    """The card's operating point; ModelCardError when it has none, or when its score
    threshold is not the card's (deprecated) 0-1 ``threshold.abnormal`` x 100: ``label`` and
    ``category`` must be read at the same point."""
    point = card.card_point()
    if abs(point.score_threshold - 100.0 * threshold) > _TOLERANCE:
        raise ModelCardError(
            f"{card.name} v{card.version}: operating_point.score_threshold "
            f"{point.score_threshold} is not 100 x threshold.abnormal ({threshold})"
        )
    return point


def score_map(cam: NDArray[Any], crop_box: Sequence[int], image_size: tuple[int, int]) -> ScoreMap:
    """The CAM as the contract's :class:`ScoreMap` over ``crop_box`` of an image of
    ``image_size`` = (w, h)."""
    grid = normalise_cam(cam)
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    return ScoreMap(
        values=[[round(float(v), 4) for v in row] for row in grid],
        box=CropBox(x0=x0, y0=y0, x1=x1, y1=y1),
        image_width=int(image_size[0]),
        image_height=int(image_size[1]),
    )
