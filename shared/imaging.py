"""Safe image decoding: PNG, JPEG and DICOM, sniffed from the bytes.

The order matters for safety: the format is recognised from magic bytes (never the file
name), the byte size and the declared pixel count are checked from the header alone, and
only then is the image decoded. A PNG that declares 100000 x 100000 pixels is refused without
allocating anything.

Pixel values keep their bit depth (8 or 16 bit, or float after DICOM LUTs) until the caller
asks for an explicit conversion with :func:`to_uint8` or :func:`to_float01`, which scale by
``value_range``: the range of the significant bits (PNG sBIT, DICOM BitsStored) or of the
real detector depth the values use (:func:`significant_bits`), never the container's (a
16-bit PNG holding 12-bit values looks like the 8-bit film, not nearly black).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.errors import ImageTooLarge, InvalidImage, UnsupportedFormat

ImageFormat = Literal["png", "jpeg", "dicom"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128
MIN_SIDE = 16

# Formats we recognise only to give a precise refusal.
_KNOWN_OTHER: list[tuple[bytes, str]] = [
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"%PDF", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"RIFF", "riff/webp"),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
]


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 60_000_000
    max_side: int = 12_000


@dataclass
class DecodedImage:
    """A decoded image: ``pixels`` is (H, W) grayscale or (H, W, 3) RGB.

    dtype is uint8, uint16, or float32 (DICOM after modality/VOI LUTs); ``value_range`` is the
    range the values live in, used by :func:`to_uint8` to convert explicitly.
    """

    pixels: NDArray[Any]
    format: ImageFormat
    bits_stored: int
    value_range: tuple[float, float]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def sniff_format(data: bytes) -> ImageFormat:
    """Recognise the format from magic bytes; refuse everything else precisely."""
    if not data:
        raise InvalidImage("The file is empty.", details={"reason": "empty"})
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= DICOM_MAGIC_OFFSET + 4 and data[128:132] == b"DICM":
        return "dicom"
    head = data[:64].lstrip()
    for magic, name in _KNOWN_OTHER:
        if data.startswith(magic):
            raise UnsupportedFormat(details={"detected": name})
    lowered = head.lower()
    if lowered.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        raise UnsupportedFormat(details={"detected": "svg/html/xml"})
    raise UnsupportedFormat(details={"detected": "unknown"})


def check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage("The image declares no pixels.", details={"reason": "empty_dimensions"})
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} pixels; at most {limits.max_side} px a side and "
            f"{limits.max_pixels} pixels are accepted.",
            details={"width": width, "height": height, "max_pixels": limits.max_pixels},
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidImage(
            f"The image is {width}x{height} pixels; at least {MIN_SIDE} px a side are needed.",
            details={"reason": "too_small", "width": width, "height": height},
        )


def _png_ihdr_size(data: bytes) -> tuple[int, int] | None:
    """Width and height straight from the IHDR chunk, the first chunk of every PNG."""
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _probe_raster(data: bytes, fmt: ImageFormat, limits: ImageLimits) -> tuple[int, int, str]:
    """Width, height and mode from the header only (Pillow opens lazily)."""
    if fmt == "png":
        size = _png_ihdr_size(data)
        if size is None:
            raise InvalidImage("The PNG header is corrupt.", details={"reason": "corrupt_header"})
        check_dimensions(size[0], size[1], limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=["PNG" if fmt == "png" else "JPEG"])
            return int(img.width), int(img.height), str(img.mode)
    except Image.DecompressionBombError:
        raise ImageTooLarge(details={"reason": "decompression_bomb"}) from None
    except Exception as exc:
        raise InvalidImage(
            "The image header is corrupt.", details={"reason": "corrupt_header"}
        ) from exc


def _decode_raster(data: bytes, fmt: ImageFormat, limits: ImageLimits) -> DecodedImage:
    width, height, mode = _probe_raster(data, fmt, limits)
    check_dimensions(width, height, limits)
    if mode == "CMYK":
        # OpenCV mishandles Adobe-inverted CMYK JPEGs; Pillow converts them correctly.
        pixels = _decode_with_pillow(data)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if decoded is None or decoded.shape[0] != height or decoded.shape[1] != width:
            # Truncated or corrupt data: OpenCV returns None (or a partial image).
            raise InvalidImage(
                "The image data is corrupt or truncated.", details={"reason": "corrupt"}
            )
        pixels = _normalise_channels(decoded)
    if (fmt == "png" and not _png_complete(data)) or (fmt == "jpeg" and not _jpeg_complete(data)):
        raise InvalidImage("The image file is truncated.", details={"reason": "truncated"})
    bits = 16 if pixels.dtype == np.uint16 else 8
    if bits == 16:
        bits = _png16_bits(pixels, _png_sbit(data) if fmt == "png" else None)
    return DecodedImage(
        pixels=pixels, format=fmt, bits_stored=bits, value_range=(0.0, float(2**bits - 1))
    )


DETECTOR_BITS = (8, 10, 12, 14, 16)
"""The bit depths real detectors and film digitisers store."""


def significant_bits(max_value: float, declared: int = 16) -> int:
    """The depth the values really use: the smallest of :data:`DETECTOR_BITS` whose range
    holds ``max_value``, never more than ``declared`` (the container's or the header's).

    Why the range of a detector depth and not the image's own min..max (or percentiles): a
    12-bit film stored in 16 bits then looks exactly like the same film in 8 bits, while a dark
    film stays darker than a bright one (no per-image contrast stretch, which would make the
    same film look different in PNG and in DICOM). The cost: a 12-bit film whose brightest
    pixel is below 1024 is read as 10-bit, i.e. brighter; real films reach far higher.
    """
    for bits in DETECTOR_BITS:
        if bits <= declared and max_value <= 2**bits - 1:
            return bits
    return declared


def _png16_bits(pixels: NDArray[Any], sbit: int | None) -> int:
    """The significant bits of a 16-bit PNG. With an sBIT chunk: PNG scales the significant
    bits up to fill 16 (then the container's range is right), but many writers store the raw
    values unscaled; values that fit the sBIT depth say which. Without sBIT: the real range."""
    top = int(pixels.max()) if pixels.size else 0
    if sbit is not None and 8 <= sbit < 16:
        return sbit if top <= 2**sbit - 1 else 16
    return significant_bits(top, 16)


def _png_sbit(data: bytes) -> int | None:
    """The largest significant-bits value of the sBIT chunk (before IDAT), or None."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"sBIT":
            body = data[pos + 8 : pos + 8 + length]
            return max(body) if body else None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _png_complete(data: bytes) -> bool:
    return data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")


def _jpeg_complete(data: bytes) -> bool:
    # The EOI marker cannot occur inside entropy-coded data (0xFF is byte-stuffed there).
    return b"\xff\xd9" in data[-4096:]


def _decode_with_pillow(data: bytes) -> NDArray[Any]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise InvalidImage("The image data is corrupt.", details={"reason": "corrupt"}) from exc


def _normalise_channels(arr: NDArray[Any]) -> NDArray[Any]:
    """OpenCV BGR/BGRA/gray → RGB or gray, alpha composited onto black."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        bgr = arr[:, :, :3].astype(np.float32)
        alpha = arr[:, :, 3:4].astype(np.float32) / float(np.iinfo(arr.dtype).max)
        arr = (bgr * alpha).round().astype(arr.dtype)
    if arr.ndim == 3 and arr.shape[2] == 3:
        rgb = np.ascontiguousarray(arr[:, :, ::-1])
        return rgb
    raise InvalidImage("Unexpected channel layout.", details={"shape": list(arr.shape)})


# --------------------------------------------------------------------------- DICOM


def decode_image(
    data: bytes, limits: ImageLimits | None = None, *, voi: bool = True
) -> DecodedImage:
    """Decode PNG, JPEG or DICOM bytes, checking every limit before the full decode.

    ``voi=False`` leaves out a DICOM file's VOI LUT / window (the modality LUT, rescale and
    MONOCHROME1 inversion still apply): for a reader choosing a window of its own."""
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"The file is {len(data)} bytes; at most {limits.max_bytes} are accepted.",
            details={"bytes": len(data), "max_bytes": limits.max_bytes},
        )
    fmt = sniff_format(data)
    if fmt == "dicom":
        from shared.dicom_decode import decode_dicom

        return decode_dicom(data, limits, voi)
    return _decode_raster(data, fmt, limits)


def to_grayscale(img: DecodedImage) -> NDArray[Any]:
    """(H, W) array in the image's own dtype and range."""
    px = img.pixels
    if px.ndim == 2:
        return px
    if px.dtype == np.float32:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.asarray(px @ weights, dtype=np.float32)
    return np.asarray(cv2.cvtColor(px, cv2.COLOR_RGB2GRAY))


def to_uint8(img: DecodedImage, gray: bool = True) -> NDArray[np.uint8]:
    """Explicit conversion to 8 bits, scaling the image's value range onto 0..255."""
    px = to_grayscale(img) if gray else img.pixels
    if px.dtype == np.uint8:
        return np.asarray(px, dtype=np.uint8)
    lo, hi = img.value_range
    scaled = (px.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))
    out: NDArray[np.uint8] = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    return out


def as_gray8(img: DecodedImage) -> DecodedImage:
    """``img`` converted once to 8-bit gray (:func:`to_uint8`), format and metadata kept: every
    later ``to_uint8`` of it is the identity, so several pipelines over one upload (a service's
    gate and its screen) pay for the conversion once and see the same pixels they would have
    converted themselves."""
    if img.pixels.ndim == 2 and img.pixels.dtype == np.uint8:
        return img
    return DecodedImage(to_uint8(img, gray=True), img.format, 8, (0.0, 255.0), dict(img.meta))


def to_float01(img: DecodedImage) -> NDArray[np.float32]:
    """Grayscale float32 in [0, 1] over the image's value range."""
    px = to_grayscale(img).astype(np.float32)
    lo, hi = img.value_range
    out: NDArray[np.float32] = np.clip((px - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    return out


def encode_png(pixels: NDArray[Any]) -> bytes:
    """PNG bytes of a gray, RGB or RGBA uint8 array (RGB order)."""
    arr = pixels
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise InvalidImage("Could not encode PNG.")
    return bytes(buf.tobytes())


def encode_dicom(
    pixels: NDArray[Any] | None,
    *,
    modality: str = "OT",
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    frames: int = 1,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A DICOM Part 10 file (explicit VR little endian, secondary capture) of gray ``pixels``
    (8 or 16 bits); ``pixels=None`` gives a file without pixel data. ``extra`` sets more
    attributes by keyword (``RescaleSlope``, ``WindowCenter``, ...)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if pixels is not None:
        arr = np.stack([pixels] * frames) if frames > 1 else pixels
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        bits = 16 if arr.dtype in (np.uint16, np.int16) else 8
        ds.BitsAllocated = bits
        ds.BitsStored = bits_stored or bits
        ds.HighBit = (bits_stored or bits) - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(arr).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
