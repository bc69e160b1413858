"""The abnormality model's class-activation map as an overlay-ready PNG (shared.overlay).

The CAM covers the model input, i.e. the lung crop resized to S x S. It is upsampled into the
crop box of the ORIGINAL image, so the PNG has the original's size and lies directly over it:
colour (jet colour map) = relative evidence for "abnormal", alpha = its strength (transparent
outside the crop box and where the map is zero).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.overlay import encode_png, jet_palette, to_levels, to_rgba
from tb_service.orientation import levels_to_uploaded


def normalise_cam(cam: NDArray[Any]) -> NDArray[np.float32]:
    """Positive evidence only, scaled to [0, 1] by the map's own maximum (NaN/inf → 0)."""
    arr = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"a CAM must be 2-D, got shape {arr.shape}")
    arr = np.maximum(arr, 0.0)
    top = float(arr.max()) if arr.size else 0.0
    out: NDArray[np.float32] = (arr / top if top > 0 else arr).astype(np.float32)
    return out


def clip_box(
    box: tuple[int, int, int, int], size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The box clipped to an image of ``size`` = (w, h); None when nothing of it is left."""
    w, h = size
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    y0, y1 = max(0, min(y0, h)), max(0, min(y1, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def cam_levels(
    cam: NDArray[Any],
    crop_box: tuple[int, int, int, int],
    original_size: tuple[int, int],
) -> NDArray[np.uint8]:
    """The CAM as overlay levels (H, W) uint8 the size of the original (``original_size`` is
    (w, h)): bilinearly upsampled into ``crop_box`` (x0, y0, x1, y1, x1/y1 exclusive), 0
    outside it. Every full-size step is one vectorised OpenCV/NumPy call.
    """
    w, h = original_size
    levels = np.zeros((h, w), dtype=np.uint8)
    box = clip_box(crop_box, original_size)
    if box is None:
        return levels
    x0, y0, x1, y1 = box
    strength = normalise_cam(cam)
    # Resize to the UNclipped box, then cut the part inside the image, so a box that sticks
    # out of the image keeps its geometry.
    bx0, by0, bx1, by1 = (int(v) for v in crop_box)
    full = cv2.resize(strength, (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_LINEAR)
    levels[y0:y1, x0:x1] = to_levels(full[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0])
    return levels


def render_heatmap(
    cam: NDArray[Any],
    crop_box: tuple[int, int, int, int],
    original_size: tuple[int, int],
    max_alpha: float = 0.75,
) -> NDArray[np.uint8]:
    """The (H, W, 4) RGBA pixels of the overlay PNG (what a decoder makes of it)."""
    return to_rgba(cam_levels(cam, crop_box, original_size), jet_palette(max_alpha))


def heatmap_png(
    cam: NDArray[Any],
    crop_box: tuple[int, int, int, int],
    original_size: tuple[int, int],
    max_alpha: float = 0.75,
    max_side: int = 0,
    turns: int = 0,
) -> tuple[bytes, int, int]:
    """(PNG bytes, width, height) of the overlay: a palette PNG (jet colours, alpha in tRNS)
    that every decoder expands to RGBA.

    The PNG has the original's size unless ``max_side`` > 0 and the original is larger: then it
    is rendered at the same aspect ratio with its long side = ``max_side`` (draw it stretched
    over the image). ``turns``: the film was scored turned upright from an upload rotated by
    that many quarter turns counter-clockwise (tb_service.orientation); the map is rendered on
    the upright film and turned back, so it lies over the upload as sent.
    """
    w, h = original_size
    box = crop_box
    if max_side > 0 and max(w, h) > max_side:
        f = max_side / float(max(w, h))
        w, h = max(1, round(w * f)), max(1, round(h * f))
        box = (
            int(np.floor(crop_box[0] * f)),
            int(np.floor(crop_box[1] * f)),
            int(np.ceil(crop_box[2] * f)),
            int(np.ceil(crop_box[3] * f)),
        )
    levels = levels_to_uploaded(cam_levels(cam, box, (w, h)), turns)
    return encode_png(levels, jet_palette(max_alpha)), int(levels.shape[1]), int(levels.shape[0])


def peak(cam: NDArray[Any], crop_box: tuple[int, int, int, int]) -> tuple[int, int]:
    """The CAM's maximum in original-image pixels (x, y): the centre of the hottest cell."""
    strength = normalise_cam(cam)
    iy, ix = np.unravel_index(int(np.argmax(strength)), strength.shape)
    x0, y0, x1, y1 = crop_box
    ch, cw = strength.shape
    x = x0 + (ix + 0.5) * (x1 - x0) / cw
    y = y0 + (iy + 0.5) * (y1 - y0) / ch
    return int(x), int(y)
