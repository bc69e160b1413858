"""DICOM decoding for :func:`shared.imaging.decode_image`: the header read first (no pixel
data, no decode, before the size limits are checked), then the pixels through the modality
LUT / rescale, the VOI LUT or window (unless the caller windows itself) and MONOCHROME1
inversion, tabulated once per stored value; the value range is the file's own (BitsStored,
the window's output), never the container's.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.errors import InvalidImage
from shared.imaging import DecodedImage, ImageLimits, check_dimensions, significant_bits


def decode_dicom(data: bytes, limits: ImageLimits, voi: bool = True) -> DecodedImage:
    """A DICOM file's pixels (see module); ``voi=False`` leaves out its VOI LUT / window."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, Exception) as exc:
        raise InvalidImage(
            "The DICOM file is corrupt.", details={"reason": "corrupt_dicom"}
        ) from exc
    if "PixelData" not in header and not _has_pixel_tag(data):
        raise InvalidImage("The DICOM file holds no image.", details={"reason": "no_pixel_data"})
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    check_dimensions(cols, rows, limits)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InvalidImage(
            "Multi-frame DICOM is not supported; send one frame per file.",
            details={"reason": "multi_frame", "frames": frames},
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds:
            raise InvalidImage(
                "The DICOM file holds no image.", details={"reason": "no_pixel_data"}
            )
        raw = ds.pixel_array
    except InvalidImage:
        raise
    except Exception as exc:
        raise InvalidImage(
            "The DICOM pixel data could not be decoded (corrupt, or a compressed transfer "
            "syntax this server cannot read).",
            details={"reason": "undecodable_pixels"},
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    meta = _dicom_meta(ds)
    meta["photometric"] = photometric
    if raw.ndim == 3 and raw.shape[-1] == 3:  # colour DICOM (RGB, or YBR converted by pydicom)
        pixels = raw.astype(np.uint8) if raw.dtype != np.uint16 else raw
        bits = 16 if pixels.dtype == np.uint16 else 8
        return DecodedImage(pixels, "dicom", bits, (0.0, float(2**bits - 1)), meta)
    if raw.ndim != 2:
        raise InvalidImage("Unexpected DICOM pixel layout.", details={"shape": list(raw.shape)})
    bits_stored = int(ds.get("BitsStored", 8) or 8)
    has_voi = voi and ("VOILUTSequence" in ds or "WindowCenter" in ds)
    values = _lut_values(raw, ds, has_voi)
    if has_voi and "WindowCenter" in ds and "VOILUTSequence" not in ds:
        # A linear window maps onto [min, max] of the output's natural range.
        lo, hi = _window_output_range(ds, values)
    elif has_voi or "ModalityLUTSequence" in ds:
        lo, hi = float(np.min(values)), float(np.max(values))
    else:
        lo, hi = _stored_range(ds, raw, bits_stored)
    if hi <= lo:
        hi = lo + 1.0
    if photometric == "MONOCHROME1":
        values = (hi + lo) - values  # inverted: high values are dark
    return DecodedImage(values, "dicom", bits_stored, (lo, hi), meta)


LUT_MAX_ENTRIES = 1 << 17
"""Stored-value spans up to this many entries are mapped through a table (16-bit fits)."""


def _lut_values(raw: NDArray[Any], ds: Any, has_voi: bool) -> NDArray[np.float32]:
    """The modality LUT (rescale) and, when the file has one, the VOI LUT or window, as
    float32. Both are functions of each stored value alone, so for integer pixels they are
    computed once per value the film can hold (at most 65536 for 16 bits, against millions of
    pixels) with the very same pydicom calls on the same dtype, then looked up: bit for bit
    what applying them to every pixel gives (tests/shared/test_imaging_dicom_lut.py)."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    def chain(x: NDArray[Any]) -> NDArray[np.float32]:
        out = apply_modality_lut(x, ds).astype(np.float32)
        if has_voi:
            out = apply_voi_lut(out, ds, prefer_lut=True).astype(np.float32)
        return np.asarray(out, dtype=np.float32)

    rescaled = any(k in ds for k in ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence"))
    if raw.dtype.kind not in "iu" or raw.size == 0 or not (has_voi or rescaled):
        return chain(raw)  # nothing to map (a plain cast), or no integer values to tabulate
    # Unsigned values index the table directly (from 0); signed ones from their minimum.
    lo, hi = (0 if raw.dtype.kind == "u" else int(raw.min())), int(raw.max())
    if hi - lo + 1 > LUT_MAX_ENTRIES or hi - lo + 1 >= raw.size:
        return chain(raw)
    table = chain(np.arange(lo, hi + 1, dtype=raw.dtype))
    index = raw if lo == 0 else raw.astype(np.int32) - lo
    out: NDArray[np.float32] = np.take(table, index)
    return out


def _stored_range(ds: Any, raw: NDArray[Any], bits_stored: int) -> tuple[float, float]:
    """The range the stored values can take (BitsStored, or the real depth when a 16-bit
    header carries fewer bits: :func:`significant_bits`), through the linear rescale: never
    the image's own min and max, so a film is not contrast-stretched per file."""
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        half = 2 ** (bits_stored - 1)
        raw_lo, raw_hi = float(-half), float(half - 1)
    else:
        top = float(np.max(raw)) if raw.size else 0.0
        raw_lo, raw_hi = 0.0, float(2 ** significant_bits(top, bits_stored) - 1)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    a, b = raw_lo * slope + intercept, raw_hi * slope + intercept
    return (min(a, b), max(a, b))


def _window_output_range(ds: Any, values: NDArray[Any]) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    try:
        bits = int(ds.get("BitsStored", 16))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        if signed:
            return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        return 0.0, float(2**bits - 1)
    except Exception:
        return lo, hi


def _has_pixel_tag(data: bytes) -> bool:
    return b"\xe0\x7f\x10\x00" in data


def _dicom_meta(ds: Any) -> dict[str, str]:
    """Technical tags only; patient identifiers are never copied out of the file."""
    meta: dict[str, str] = {}
    for tag in ("Modality", "BodyPartExamined", "ImageLaterality", "Laterality", "ViewPosition"):
        value = ds.get(tag)
        if value not in (None, ""):
            meta[tag] = str(value).strip()
    return meta


# --------------------------------------------------------------------------- public API
