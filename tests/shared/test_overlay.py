"""shared.overlay: value maps → 8-bit palette PNGs with per-entry alpha (tRNS)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from shared.overlay import (
    encode_png,
    jet_palette,
    png_image,
    solid_palette,
    to_levels,
    to_rgba,
)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """The PNG's chunks by type (the last of a kind wins), CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out: dict[bytes, bytes] = {}
    pos = 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        out[kind] = out.get(kind, b"") + body if kind == b"IDAT" else body
        pos += 12 + n
    return out


def _ramp(h: int = 40, w: int = 256) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))


@pytest.mark.parametrize(
    "palette", [jet_palette(0.75), jet_palette(1.0), solid_palette((230, 0, 0))]
)
def test_palette_png_carries_256_entries_and_trns_alpha(palette: np.ndarray) -> None:
    levels = to_levels(_ramp())
    data = encode_png(levels, palette)
    chunks = _chunks(data)
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (256, 40, 8, 3)  # 8-bit indexed colour
    assert len(chunks[b"PLTE"]) == 256 * 3
    assert chunks[b"PLTE"] == palette[:, :3].tobytes()
    assert b"tRNS" in chunks and chunks[b"tRNS"] == palette[:, 3].tobytes()[: len(chunks[b"tRNS"])]
    # Every decoder expands it to exactly palette[levels]: Pillow and OpenCV alike.
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "P" and img.size == (256, 40)
        assert np.array_equal(np.asarray(img.convert("RGBA")), to_rgba(levels, palette))
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgra.shape == (40, 256, 4)
    assert np.array_equal(bgra[:, :, [2, 1, 0, 3]], to_rgba(levels, palette))


def test_jet_alpha_and_colour_rise_with_the_value() -> None:
    pal = jet_palette(0.75).astype(int)
    alpha = pal[:, 3]
    assert alpha[0] == 0 and alpha[255] == round(255 * 0.75)
    assert np.all(np.diff(alpha) >= 0) and alpha[128] > alpha[64] > alpha[1]
    # jet: blue at the low end, red at the high end, the hue falling steadily in between.
    r, b = pal[1:, 0], pal[1:, 2]
    assert b[0] > r[0] and r[-1] > b[-1]
    rgb = jet_palette(0.75)[1:, :3].reshape(1, -1, 3)
    hue = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV_FULL)[0, :, 0].astype(int)
    assert hue[0] > hue[-1] and np.all(np.diff(hue) <= 0)
    assert jet_palette(1.0)[255, 3] == 255


def test_solid_palette_alpha_monotone_with_cutoff() -> None:
    pal = solid_palette((0, 200, 0))
    alpha = pal[:, 3].astype(int)
    assert np.all(alpha[: int(0.05 * 255)] == 0)  # below the cutoff: transparent
    assert np.all(np.diff(alpha[13:]) >= 0) and alpha[255] == 240
    assert np.all(pal[1:, :3] == (0, 200, 0))


def test_zero_map_is_fully_transparent() -> None:
    for palette in (jet_palette(0.75), solid_palette((230, 0, 0))):
        levels = to_levels(np.zeros((30, 20), np.float32))
        rgba = to_rgba(levels, palette)
        assert rgba.shape == (30, 20, 4) and rgba.max() == 0
        with Image.open(io.BytesIO(encode_png(levels, palette))) as img:
            assert np.asarray(img.convert("RGBA"))[:, :, 3].max() == 0


def test_levels_round_and_clip() -> None:
    values = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf]], np.float32)
    assert to_levels(values).tolist() == [[0, 0, 128, 255, 255, 0, 255]]
    with pytest.raises(ValueError):
        to_levels(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2), np.float32), jet_palette())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        jet_palette(0.0)


def test_png_image_has_the_map_size() -> None:
    levels = to_levels(np.random.default_rng(0).random((17, 5)).astype(np.float32))
    png = png_image(levels, jet_palette())
    assert (png.width, png.height, png.media_type) == (5, 17, "image/png")
    with Image.open(io.BytesIO(base64.b64decode(png.base64))) as img:
        assert img.size == (5, 17)


def test_palettes_are_shared_and_read_only() -> None:
    assert jet_palette(0.75) is jet_palette(0.75)
    with pytest.raises(ValueError):
        jet_palette(0.75)[0, 0] = 1
