"""The overlay PNGs of a view's benign and malignant heatmaps."""

from __future__ import annotations

import base64
import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.contracts.common import PngImage


def heatmap_png(heat: NDArray[np.float32], colour: tuple[int, int, int]) -> PngImage:
    """Overlay PNG: the class colour, alpha proportional to the probability (0 below 0.05).

    Written as an 8-bit palette PNG whose palette carries the alpha (tRNS): every decoder
    expands it to RGBA, and it encodes ~5x faster than a 32-bit RGBA PNG of the same size.
    """
    idx = np.clip(np.rint(np.clip(heat, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    levels = np.arange(256, dtype=np.float64) / 255.0
    alpha = np.where(levels < 0.05, 0.0, 40.0 + 200.0 * levels).round().astype(np.uint8)
    img = Image.frombytes("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes())
    img.putpalette(list(colour) * 256)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, transparency=alpha.tobytes())
    return PngImage(
        width=int(idx.shape[1]),
        height=int(idx.shape[0]),
        base64=base64.b64encode(buf.getvalue()).decode(),
    )
