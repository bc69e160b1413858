"""What a browser (or a printed report) shows of a stored image: an 8-bit display rendering of
any original, DICOM or not, and a small thumbnail of it. Pure functions; the cache that stores
them beside the original is :mod:`gateway.display_store`.

Decoding is :func:`shared.imaging.decode_image`'s (the same reader the inference services
use): the modality LUT (rescale slope/intercept), MONOCHROME1 inversion and, for the ``file``
preset, the file's own VOI LUT or WindowCenter/WindowWidth. The other presets choose a window
of their own on the values before any VOI: projection radiographs have no absolute units (no
CT Hounsfield scale), so a preset is a range of the image's own value percentiles:

- ``lung``: the film's 0.5th to 65th value percentile over the grey scale, so the lung fields
  (the darker part of a chest film) get the contrast and mediastinum and bone saturate to white;
- ``mammography``: the breast only (pixels above the background, Otsu's threshold), its 1st to
  99.5th percentile, so the background does not take half of the grey scale.

The display image is the film at the scale the overlays are rendered at
(:func:`gateway.score_overlay.display_scale`, long side at most 1024 px), so an overlay's
``covers`` box (original pixels) times that scale places it on the display image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gateway.score_overlay import display_scale
from shared.contracts.common import CropBox
from shared.imaging import DecodedImage, ImageLimits, decode_image, to_grayscale, to_uint8

Preset = Literal["file", "lung", "mammography"]
PRESETS: tuple[Preset, ...] = ("file", "lung", "mammography")
THUMB_SIDE = 160  # long side of a history thumbnail
THUMB_QUALITY = 85
DISPLAY_MEDIA_TYPE = "image/png"
THUMB_MEDIA_TYPE = "image/jpeg"

LUNG_PERCENTILES = (0.5, 65.0)
MAMMO_PERCENTILES = (1.0, 99.5)


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    width: int
    height: int


def _window(values: NDArray[Any], lo: float, hi: float) -> NDArray[np.uint8]:
    if hi <= lo:
        hi = lo + 1.0
    scaled = (values.astype(np.float32) - lo) * (255.0 / (hi - lo))
    out: NDArray[np.uint8] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return out


def _otsu(gray: NDArray[Any]) -> float:
    """Otsu's threshold of ``gray`` in its own units (computed on 256 levels of its range)."""
    lo, hi = float(gray.min()), float(gray.max())
    if hi <= lo:
        return lo
    eight = np.round((gray - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    level, _ = cv2.threshold(eight, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + float(level) * (hi - lo) / 255.0


def windowed(img: DecodedImage, preset: Preset) -> NDArray[np.uint8]:
    """The full-resolution 8-bit pixels of a decoded image at ``preset`` (decoded with the
    file's VOI for ``file``, without it for the others): gray, or RGB for a colour original
    at ``file``."""
    if preset == "file":
        return to_uint8(img, gray=img.pixels.ndim == 2)
    gray = to_grayscale(img).astype(np.float32)
    if preset == "lung":
        lo, hi = np.percentile(gray, LUNG_PERCENTILES)
    else:
        tissue = gray[gray > _otsu(gray)]
        lo, hi = np.percentile(tissue if tissue.size >= 16 else gray, MAMMO_PERCENTILES)
    return _window(gray, float(lo), float(hi))


def display_size(width: int, height: int) -> tuple[int, int]:
    """The display image's size for an original of ``width`` x ``height``."""
    f = display_scale(width, height)
    return max(1, round(width * f)), max(1, round(height * f))


def render_display(data: bytes, preset: Preset, limits: ImageLimits) -> Rendered:
    """The display PNG of an original (any format :mod:`shared.imaging` reads)."""
    img = decode_image(data, limits, voi=preset == "file")
    pixels = windowed(img, preset)
    w, h = display_size(img.width, img.height)
    if (w, h) != (img.width, img.height):
        pixels = np.asarray(cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA), np.uint8)
    mode = "L" if pixels.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(buf, format="PNG", compress_level=6)
    return Rendered(buf.getvalue(), DISPLAY_MEDIA_TYPE, w, h)


def render_thumbnail(display_png: bytes, side: int = THUMB_SIDE) -> Rendered:
    """A JPEG thumbnail (long side ``side``) of a display PNG."""
    with Image.open(io.BytesIO(display_png)) as im:
        im.load()
        small = im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB")
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
        return Rendered(buf.getvalue(), THUMB_MEDIA_TYPE, small.width, small.height)


def composite(
    display_png: bytes,
    overlay_png: bytes,
    covers: CropBox | None = None,
    image_size: tuple[int, int] | None = None,
) -> bytes:
    """The display image with an overlay PNG drawn over it (RGB PNG): the overlay stretched
    over ``covers`` (pixels of the original, which is ``image_size`` (width, height)), or over
    the whole image when either is None."""
    with Image.open(io.BytesIO(display_png)) as base_im, Image.open(io.BytesIO(overlay_png)) as ov:
        base = base_im.convert("RGBA")
        layer = ov.convert("RGBA")
    x0, y0, w, h = 0, 0, base.width, base.height
    if covers is not None and image_size is not None:
        fx, fy = base.width / image_size[0], base.height / image_size[1]
        x0, y0 = round(covers.x0 * fx), round(covers.y0 * fy)
        w = max(1, round((covers.x1 - covers.x0) * fx))
        h = max(1, round((covers.y1 - covers.y0) * fy))
    canvas = Image.new("RGBA", base.size)
    canvas.paste(layer.resize((w, h), Image.Resampling.BILINEAR), (x0, y0))
    out = Image.alpha_composite(base, canvas).convert("RGB")
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return int(im.width), int(im.height)
