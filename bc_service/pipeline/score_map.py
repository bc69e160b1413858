"""A view's low-resolution score map (:class:`shared.contracts.screening.ScoreMap`): where the
patch model found tissue standing out from the rest of the breast, for a reader to render at
display size (the gateway does, through :mod:`gateway.score_overlay`, as for chest films).

Per working pixel the lesion probability (benign + malignant = 1 - normal, the patch model's
strongest signal) minus its median over the breast, clipped at 0: a map that is high
everywhere (the old malignant map tinted the whole breast) says nothing about *where*. It is
zero outside the breast mask, averaged into cells of half a patch stride (at most
``MAX_CELLS`` a side); a cell less than half on the breast is zero, so that the overlay, drawn
bilinearly between cell centres, stays on the breast. Mirrored back to the orientation of the
upload and divided by its maximum (two decimals: the map is a coarse
locator). On an MLO view the pectoral muscle (:mod:`bc_service.pipeline.pectoral`) is not
breast: it is left out of the median and its cells are zero, so a bright muscle never lights
up the map.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from bc_service.pipeline.pectoral import muscle_of_view
from bc_service.pipeline.stages import MammoState
from shared.contracts.common import CropBox
from shared.contracts.screening import ScoreMap

MAX_CELLS = 48  # per side (the contract allows 64): 4 views stay far under 100 KB


def view_of(s: MammoState) -> str:
    """CC or MLO: the view the request or the DICOM tags give, else the detected one."""
    tag = s.given_tag or s.dicom_tag
    return tag.split("-")[1] if tag else s.detected_view


def score_map(s: MammoState, stride: int) -> ScoreMap | None:
    """The view's score map over its crop box; None before the heatmaps stage ran."""
    if s.work_mask is None or "benign" not in s.heatmaps or "malignant" not in s.heatmaps:
        return None
    mask = s.work_mask
    if s.work is not None:
        mask = mask & ~muscle_of_view(s.work, mask, view_of(s))
    lesion = np.clip(s.heatmaps["benign"] + s.heatmaps["malignant"], 0.0, 1.0)
    background = float(np.median(lesion[mask])) if mask.any() else 0.0
    standing_out = np.where(mask, np.clip(lesion - background, 0.0, None), 0.0)
    if s.flipped:  # back to the upload's orientation
        standing_out = standing_out[:, ::-1]
    h, w = mask.shape
    cell = max(1, stride // 2)
    rows = max(1, min(MAX_CELLS, math.ceil(h / cell)))
    cols = max(1, min(MAX_CELLS, math.ceil(w / cell)))
    size = (cols, rows)
    grid = cv2.resize(
        np.ascontiguousarray(standing_out, dtype=np.float32), size, interpolation=cv2.INTER_AREA
    )
    on_breast = cv2.resize(
        np.ascontiguousarray(mask[:, ::-1] if s.flipped else mask, dtype=np.float32),
        size,
        interpolation=cv2.INTER_AREA,
    )
    grid[on_breast < 0.5] = 0.0
    peak = float(grid.max())
    # float64 before rounding: float32 values would serialise as 0.3700000047683716.
    scaled = grid.astype(np.float64) / peak if peak > 0 else np.zeros(grid.shape)
    values = np.round(scaled, 2)
    x0, y0, x1, y1 = s.crop_box
    return ScoreMap(
        values=np.clip(values, 0.0, 1.0).tolist(),
        box=CropBox(x0=x0, y0=y0, x1=x1, y1=y1),
        image_width=s.image.width,
        image_height=s.image.height,
    )
