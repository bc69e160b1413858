"""The overlay PNGs of a view's benign and malignant heatmaps (through :mod:`shared.overlay`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shared.contracts.common import PngImage
from shared.overlay import png_image, solid_palette, to_levels


def heatmap_png(heat: NDArray[np.float32], colour: tuple[int, int, int]) -> PngImage:
    """Overlay PNG: the class colour, alpha proportional to the probability (0 below 0.05)."""
    return png_image(to_levels(heat), solid_palette(colour))
