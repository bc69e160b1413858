"""The fast DICOM window (issue 15): the modality and VOI LUTs are computed once per stored value
the film can hold and looked up, never on every pixel, and the values are bit for bit those of
pydicom's functions applied to every pixel (the path before)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import processing
from pydicom.sequence import Sequence

from shared.imaging import decode_image, encode_dicom


def _film(signed: bool = False, bits: int = 12) -> np.ndarray:
    rng = np.random.default_rng(7)
    top = 2 ** (bits - 1) if signed else 2**bits
    lo = -top if signed else 0
    px = rng.integers(lo, top, (96, 80))
    return px.astype(np.int16 if signed else np.uint16)


def _voi_lut_sequence() -> Sequence:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = (np.sqrt(np.arange(4096) / 4095.0) * 255).astype("<u2").tobytes()
    return Sequence([item])


CASES: dict[str, tuple[np.ndarray, dict[str, Any], str]] = {
    "window": (_film(), {"WindowCenter": 2048, "WindowWidth": 4096}, "MONOCHROME2"),
    "rescale+window": (
        _film(),
        {"RescaleSlope": 2, "RescaleIntercept": -1024, "WindowCenter": 300, "WindowWidth": 1500},
        "MONOCHROME2",
    ),
    "signed ct": (
        _film(signed=True),
        {"RescaleSlope": 1, "RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400},
        "MONOCHROME2",
    ),
    "voi lut sequence": (_film(), {"VOILUTSequence": _voi_lut_sequence()}, "MONOCHROME2"),
    "monochrome1 window": (_film(), {"WindowCenter": 1800, "WindowWidth": 3000}, "MONOCHROME1"),
    "rescale only": (_film(), {"RescaleSlope": 0.5, "RescaleIntercept": 10}, "MONOCHROME2"),
}


def _reference(data: bytes) -> np.ndarray:
    """pydicom's LUTs on every pixel, as the decoder applied them before."""
    ds = pydicom.dcmread(io.BytesIO(data))
    values = processing.apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = processing.apply_voi_lut(values, ds, prefer_lut=True).astype(np.float32)
    return np.asarray(values, np.float32)


@pytest.mark.parametrize("case", list(CASES))
def test_dicom_values_are_bit_identical_to_pixelwise_luts(case: str) -> None:
    px, extra, photometric = CASES[case]
    data = encode_dicom(
        px, modality="DX", bits_stored=12, signed=px.dtype == np.int16, photometric=photometric,
        extra=extra,
    )  # fmt: skip
    img = decode_image(data)
    ref = _reference(data)
    lo, hi = img.value_range
    expected = (hi + lo) - ref if photometric == "MONOCHROME1" else ref
    assert img.pixels.dtype == np.float32
    assert np.array_equal(img.pixels, expected)


def test_luts_run_on_one_entry_per_stored_value_not_per_pixel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    real = processing.apply_voi_lut

    def spy(arr: np.ndarray, ds: Any, **kw: Any) -> np.ndarray:
        sizes.append(int(arr.size))
        return real(arr, ds, **kw)

    monkeypatch.setattr(processing, "apply_voi_lut", spy)
    big = np.random.default_rng(1).integers(0, 4096, (600, 500)).astype(np.uint16)
    decode_image(
        encode_dicom(big, bits_stored=12, extra={"WindowCenter": 2048, "WindowWidth": 4096})
    )
    assert sizes and max(sizes) <= 4096 < big.size
