"""Synthetic images for tests: PNG/JPEG variants, DICOM files built with pydicom, bombs."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import cv2
import numpy as np
from PIL import Image

from shared.imaging import encode_dicom


def gradient(h: int = 64, w: int = 48, dtype: Any = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    row = np.linspace(0, top, w, dtype=np.float64)
    return np.tile(row, (h, 1)).astype(dtype)


def png_bytes(arr: np.ndarray) -> bytes:
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def jpeg_bytes(arr: np.ndarray, quality: int = 92) -> bytes:
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def pillow_bytes(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def palette_png(h: int = 40, w: int = 40) -> bytes:
    img = Image.fromarray(gradient(h, w)).convert("P")
    return pillow_bytes(img, "PNG")


def cmyk_jpeg(h: int = 40, w: int = 40) -> bytes:
    img = Image.fromarray(np.dstack([gradient(h, w)] * 3)).convert("CMYK")
    return pillow_bytes(img, "JPEG")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares width x height 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # A few rows of compressed zeros: the point is that the header alone must refuse it.
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def dicom_bytes(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    frames: int = 1,
    modality: str = "DX",
    signed: bool = False,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A DICOM Part 10 file built with pydicom. ``pixels=None`` gives a file without pixel data."""
    attrs: dict[str, Any] = {"PatientName": "Test^Synthetic", "PatientID": "SYNTH-0001"}
    if slope is not None:
        attrs.update(RescaleSlope=slope, RescaleIntercept=intercept or 0)
    if window is not None:
        attrs.update(WindowCenter=window[0], WindowWidth=window[1])
    attrs.update(extra or {})
    return encode_dicom(
        pixels,
        modality=modality,
        photometric=photometric,
        bits_stored=bits_stored,
        signed=signed,
        frames=frames,
        extra=attrs,
    )


def pydicom_test_file(name: str) -> bytes:
    """Bytes of a DICOM file pydicom ships (CT_small.dcm, MR_small.dcm, ...)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, name
    with open(str(path), "rb") as fh:
        return fh.read()


def mammo_phantom(
    h: int = 512,
    w: int = 416,
    *,
    chest_wall: str = "left",
    view: str = "MLO",
    lesion: tuple[int, int, int] | None = None,
    label: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """A synthetic 8-bit mammogram-like image: a textured half-disc (CC) or a tilted breast
    with a bright pectoral triangle at the top (MLO) against the chest wall, a bright film
    label in the opposite corner, and an optional bright lesion (x, y, radius). The geometry
    is drawn with the chest wall on the left and mirrored when ``chest_wall == "right"``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if view == "CC":
        inside = ((xx / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.38 * h)) ** 2) <= 1.0
    else:
        # MLO: wide from the top edge, nipple in the lower half, pectoral triangle on top.
        cy = 0.6 * h
        inside = ((xx / (0.75 * w)) ** 2 + ((yy - cy) / (0.62 * h)) ** 2) <= 1.0
        inside |= (yy < cy) & (xx < 0.55 * w * (1 - yy / (2.2 * h)))
    tissue = 90 + 60 * cv2.GaussianBlur(rng.random((h, w)), (0, 0), 6) + rng.normal(0, 6, (h, w))
    img = np.where(inside, tissue, rng.normal(6, 2, (h, w)))
    if view == "MLO":
        pect = (xx < 0.35 * w * (1 - yy / (0.55 * h))) & inside
        img = np.where(pect, 200 + rng.normal(0, 5, (h, w)), img)
    if lesion is not None:
        lx, ly, lr = lesion
        if chest_wall == "right":
            lx = w - 1 - lx
        blob = ((xx - lx) ** 2 + (yy - ly) ** 2) <= lr**2
        img = np.where(blob & inside, 220.0, img)
    if chest_wall == "right":
        img = img[:, ::-1]
    if label:
        lx0 = 10 if chest_wall == "right" else w - 50
        img[12:40, lx0 : lx0 + 36] = 250.0
    return np.clip(img, 0, 255).astype(np.uint8)
