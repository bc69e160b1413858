"""Safe decoding: every accepted format, every refusal, and limits checked before decoding."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from shared.errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from shared.imaging import ImageLimits, decode_image, sniff_format, to_float01, to_uint8
from tests import imagegen as g


def test_png_8bit_gray_roundtrip() -> None:
    arr = g.gradient(64, 48)
    img = decode_image(g.png_bytes(arr))
    assert img.format == "png" and img.bits_stored == 8
    assert np.array_equal(img.pixels, arr)


def test_png_16bit_keeps_depth_until_explicit_conversion() -> None:
    arr = g.gradient(40, 50, np.uint16)
    img = decode_image(g.png_bytes(arr))
    assert img.pixels.dtype == np.uint16 and img.bits_stored == 16
    assert np.array_equal(img.pixels, arr)
    u8 = to_uint8(img)
    assert u8.dtype == np.uint8 and u8.max() == 255 and u8.min() == 0
    f = to_float01(img)
    assert f.dtype == np.float32 and f.min() >= 0.0 and f.max() <= 1.0


def test_png_rgb_is_returned_in_rgb_order() -> None:
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[..., 0] = 200  # red
    img = decode_image(g.png_bytes(arr))
    assert img.pixels.shape == (32, 32, 3)
    assert img.pixels[0, 0, 0] == 200 and img.pixels[0, 0, 2] == 0


def test_png_rgba_alpha_is_composited() -> None:
    arr = np.full((32, 32, 4), 255, np.uint8)
    arr[..., 3] = 0  # fully transparent
    img = decode_image(g.png_bytes(arr))
    assert img.pixels.shape == (32, 32, 3) and int(img.pixels.max()) == 0


def test_palette_png_decodes() -> None:
    img = decode_image(g.palette_png())
    assert img.pixels.dtype == np.uint8 and img.height == 40 and img.width == 40


def test_jpeg_gray_and_color() -> None:
    gray = decode_image(g.jpeg_bytes(g.gradient(40, 40)))
    assert gray.format == "jpeg" and gray.pixels.ndim == 2
    color = decode_image(g.jpeg_bytes(np.dstack([g.gradient(40, 40)] * 3)))
    assert color.pixels.shape == (40, 40, 3)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    img = decode_image(g.cmyk_jpeg())
    assert img.pixels.shape == (40, 40, 3) and img.pixels.dtype == np.uint8
    # a gray gradient stays a gray gradient (no inverted channels)
    assert img.pixels[:, -1].mean() > img.pixels[:, 0].mean() + 100


def test_format_is_sniffed_not_taken_from_the_name() -> None:
    assert sniff_format(g.png_bytes(g.gradient())) == "png"
    assert sniff_format(g.jpeg_bytes(g.gradient())) == "jpeg"
    assert sniff_format(g.dicom_bytes(g.gradient())) == "dicom"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"GIF89a" + b"\x00" * 100, "gif"),
        (b"%PDF-1.7\n" + b"\x00" * 100, "pdf"),
        (b"PK\x03\x04" + b"\x00" * 100, "zip"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "svg/html/xml"),
        (b"<!DOCTYPE html><html></html>", "svg/html/xml"),
        (b"hello, this is text", "unknown"),
    ],
)
def test_other_formats_are_refused_precisely(data: bytes, detected: str) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        decode_image(data)
    assert info.value.details["detected"] == detected
    assert info.value.status_code == 415


def test_zero_bytes() -> None:
    with pytest.raises(InvalidImage) as info:
        decode_image(b"")
    assert info.value.details["reason"] == "empty"


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_png_and_jpeg(cut: float) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (120, 120), dtype=np.uint8)
    for data in (g.png_bytes(noise), g.jpeg_bytes(noise)):
        with pytest.raises(InvalidImage):
            decode_image(data[: int(len(data) * cut)])


def test_corrupt_png_body() -> None:
    data = bytearray(g.png_bytes(g.gradient(80, 80)))
    data[60:90] = b"\x00" * 30
    with pytest.raises(InvalidImage):
        decode_image(bytes(data))


def test_header_only_png_is_invalid() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"\x89PNG\r\n\x1a\n")


def test_png_bomb_is_refused_fast_without_allocating() -> None:
    bomb = g.png_bomb()
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as info:
            decode_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The header alone refuses it: nowhere near the 10 GB the pixels would take.
    assert peak < 5 * 1024 * 1024
    assert info.value.details["width"] == 100_000


def test_byte_limit_checked_first() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(g.png_bytes(g.gradient(64, 64)), ImageLimits(max_bytes=100))


def test_too_small_image() -> None:
    with pytest.raises(InvalidImage) as info:
        decode_image(g.png_bytes(g.gradient(4, 4)))
    assert info.value.details["reason"] == "too_small"


# ------------------------------------------------------------------ DICOM


def test_dicom_monochrome2_8bit() -> None:
    arr = g.gradient(32, 40)
    img = decode_image(g.dicom_bytes(arr))
    assert img.format == "dicom" and img.pixels.shape == (32, 40)
    assert np.allclose(to_uint8(img), arr, atol=1)


def test_dicom_monochrome1_is_inverted() -> None:
    arr = g.gradient(32, 40)
    img = decode_image(g.dicom_bytes(arr, photometric="MONOCHROME1"))
    u8 = to_uint8(img)
    assert u8[0, 0] == 255 and u8[0, -1] == 0
    assert img.meta["photometric"] == "MONOCHROME1"


def test_dicom_12bit_in_16_keeps_depth_and_rescale_applied() -> None:
    arr = (g.gradient(32, 32, np.uint16) >> 4).astype(np.uint16)  # 12-bit values
    img = decode_image(g.dicom_bytes(arr, bits_stored=12, slope=2.0, intercept=-100.0))
    assert img.bits_stored == 12
    assert img.pixels.dtype == np.float32
    assert img.pixels.min() == pytest.approx(-100.0)
    assert img.pixels.max() == pytest.approx(2.0 * 4095 - 100.0)


def test_dicom_window_is_applied() -> None:
    arr = (g.gradient(32, 32, np.uint16) >> 4).astype(np.uint16)
    img = decode_image(g.dicom_bytes(arr, bits_stored=12, window=(1000.0, 200.0)))
    u8 = to_uint8(img)
    # values below the window are black, above it white, a steep ramp in between
    assert u8[0, 0] == 0 and u8[0, -1] == 255
    assert (u8 == 0).mean() > 0.2 and (u8 == 255).mean() > 0.5


def test_dicom_without_pixels_is_refused() -> None:
    with pytest.raises(InvalidImage) as info:
        decode_image(g.dicom_bytes(None))
    assert info.value.details["reason"] == "no_pixel_data"


def test_multiframe_dicom_is_refused() -> None:
    with pytest.raises(InvalidImage) as info:
        decode_image(g.dicom_bytes(g.gradient(32, 32), frames=3))
    assert info.value.details["reason"] == "multi_frame"


def test_dicom_declaring_huge_size_is_refused_before_decoding() -> None:
    data = g.dicom_bytes(g.gradient(32, 32))
    # Patch Rows (0028,0010) to 65535 in the header: refused on dimensions alone.
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = 65535
    ds.Columns = 65535
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ImageTooLarge):
        decode_image(out.getvalue())


def test_truncated_dicom() -> None:
    data = g.dicom_bytes(g.gradient(64, 64))
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) - 500])


def test_dicom_meta_has_no_patient_identifiers() -> None:
    img = decode_image(
        g.dicom_bytes(
            g.gradient(32, 32), modality="MG", extra={"ImageLaterality": "L", "ViewPosition": "CC"}
        )
    )
    assert img.meta["Modality"] == "MG"
    assert img.meta["ImageLaterality"] == "L" and img.meta["ViewPosition"] == "CC"
    assert "PatientName" not in img.meta and "PatientID" not in img.meta


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_shipped_ct_and_mr_decode(name: str) -> None:
    img = decode_image(g.pydicom_test_file(name))
    assert img.meta["Modality"] in {"CT", "MR"}
    assert img.pixels.ndim == 2


def test_dicom_mislabelled_png_name_irrelevant(tmp_path: object) -> None:
    # The decoder never sees a name; a DICOM is a DICOM whatever it was called.
    img = decode_image(g.dicom_bytes(g.gradient(20, 20)))
    assert img.format == "dicom"


def test_pillow_decompression_bomb_header_jpeg() -> None:
    img = Image.new("L", (20, 20))
    data = g.pillow_bytes(img, "JPEG")
    # rewrite the SOF0 dimensions to 60000 x 60000
    sof = data.find(b"\xff\xc0")
    patched = bytearray(data)
    patched[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    with pytest.raises(ImageTooLarge):
        decode_image(bytes(patched))
