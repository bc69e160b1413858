"""Bit depth: a film keeps its look whatever container carries it (issue 13, item 3).

A 16-bit PNG or DICOM holding 12-bit values (0..4095) must come out like the 8-bit film, not
nearly black (scaled by the container's 0..65535). PNG's sBIT chunk says how many bits are
significant; without it the real range is the smallest detector depth (8, 10, 12, 14 or 16
bits) that holds the image's values.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.imaging import decode_image, encode_dicom, significant_bits, to_float01, to_uint8
from tests import imagegen as g


def _film(h: int = 48, w: int = 40) -> np.ndarray:
    """An 8-bit 'film': a smooth pattern that does not span 0..255 (min 20, max 230)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pattern = 0.5 + 0.5 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    return np.round(20 + 210 * (pattern - pattern.min()) / np.ptp(pattern)).astype(np.uint8)


def _to_bits(film: np.ndarray, bits: int) -> np.ndarray:
    """The 8-bit film at ``bits`` of depth (what a detector would have stored), in uint16."""
    top = 2**bits - 1
    return np.round(film.astype(np.float64) * top / 255.0).astype(np.uint16)


def _with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (gray: one byte) right after IHDR."""
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + g._chunk(b"sBIT", bytes([bits])) + png[ihdr_end:]


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_png16_without_sbit_is_scaled_by_its_real_range(bits: int) -> None:
    film = _film()
    img = decode_image(g.png_bytes(_to_bits(film, bits)))
    assert img.bits_stored == bits
    assert np.abs(to_uint8(img).astype(int) - film.astype(int)).max() <= 1


def test_png16_with_sbit_and_unscaled_values() -> None:
    film = _film()
    img = decode_image(_with_sbit(g.png_bytes(_to_bits(film, 12)), 12))
    assert img.bits_stored == 12 and img.value_range == (0.0, 4095.0)
    assert np.abs(to_uint8(img).astype(int) - film.astype(int)).max() <= 1


def test_png16_with_sbit_and_values_scaled_up_as_the_spec_says() -> None:
    """PNG's rule: 12 significant bits are shifted up to fill 16 (v << 4 | v >> 8)."""
    film = _film()
    v = _to_bits(film, 12)
    scaled = ((v << 4) | (v >> 8)).astype(np.uint16)
    img = decode_image(_with_sbit(g.png_bytes(scaled), 12))
    assert img.value_range == (0.0, 65535.0)
    assert np.abs(to_uint8(img).astype(int) - film.astype(int)).max() <= 1


def test_png16_12bit_is_not_nearly_black() -> None:
    """The bug report: a 16-bit PNG holding 12-bit values came out nearly black."""
    film = _film()
    u8 = to_uint8(decode_image(g.png_bytes(_to_bits(film, 12))))
    assert u8.max() >= 225 and abs(float(u8.mean()) - float(film.mean())) < 1.0
    f = to_float01(decode_image(g.png_bytes(_to_bits(film, 12))))
    assert f.max() > 0.85


def test_full_range_16bit_png_still_uses_the_whole_range() -> None:
    arr = g.gradient(40, 50, np.uint16)
    img = decode_image(g.png_bytes(arr))
    assert img.value_range == (0.0, 65535.0)
    u8 = to_uint8(img)
    assert u8.min() == 0 and u8.max() == 255


@pytest.mark.parametrize(("bits_stored", "bits"), [(16, 12), (12, 12), (16, 8), (16, 16)])
def test_dicom_16bit_container_is_scaled_by_the_real_range(bits_stored: int, bits: int) -> None:
    film = _film()
    data = encode_dicom(_to_bits(film, bits), modality="DX", bits_stored=bits_stored)
    u8 = to_uint8(decode_image(data))
    assert np.abs(u8.astype(int) - film.astype(int)).max() <= 1


def test_dicom_8bit_is_not_stretched_to_its_min_and_max() -> None:
    """An 8-bit DICOM film must look like the same film as a PNG: no per-image stretch."""
    film = _film()
    u8 = to_uint8(decode_image(encode_dicom(film, modality="DX")))
    assert np.abs(u8.astype(int) - film.astype(int)).max() <= 1


@pytest.mark.parametrize("bits", [8, 12])
def test_dicom_monochrome1_inverts_over_the_stored_range(bits: int) -> None:
    film = _film()
    stored = (2**bits - 1) - _to_bits(film, bits).astype(np.int64)
    arr = stored.astype(np.uint8 if bits == 8 else np.uint16)
    data = encode_dicom(arr, modality="DX", photometric="MONOCHROME1", bits_stored=bits)
    u8 = to_uint8(decode_image(data))
    assert np.abs(u8.astype(int) - film.astype(int)).max() <= 1


def test_dicom_rescale_maps_the_stored_range() -> None:
    film = _film()
    data = encode_dicom(
        _to_bits(film, 12),
        modality="DX",
        bits_stored=12,
        extra={"RescaleSlope": "2.0", "RescaleIntercept": "-100.0"},
    )
    img = decode_image(data)
    assert img.value_range == (-100.0, 2.0 * 4095 - 100.0)
    assert np.abs(to_uint8(img).astype(int) - film.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("max_value", "declared", "expected"),
    [(0, 16, 8), (255, 16, 8), (256, 16, 10), (1023, 16, 10), (4095, 16, 12), (4096, 16, 14)],
)
def test_significant_bits(max_value: int, declared: int, expected: int) -> None:
    assert significant_bits(max_value, declared) == expected


def test_significant_bits_never_exceeds_the_declared_depth() -> None:
    assert significant_bits(5000, 12) == 12
    assert significant_bits(100, 12) == 8
    assert significant_bits(60000, 16) == 16
