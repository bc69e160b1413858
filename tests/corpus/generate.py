"""Regenerate the bad-input corpus: ``python -m tests.corpus.generate``.

Every file is synthetic, or a test file that pydicom / scikit-image ship (CT/MR DICOM; the CC0
"coffee" photograph): nothing comes from ../shared/data. ``manifest.json`` records, per file,
what the shared decoder must say (`decode`: an error code, or "ok" for a decodable image).
"""

from __future__ import annotations

import io
import json
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests import imagegen as g

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"


def _noise(h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)


def _smooth(h: int = 128, w: int = 128) -> np.ndarray:
    return cv2.GaussianBlur(_noise(h, w), (0, 0), 4)


def _pil(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _pydicom_file(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom no longer ships {name}"
    return Path(str(path)).read_bytes()


def build() -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, expected decoder outcome)."""
    png = g.png_bytes(_smooth())
    jpg = g.jpeg_bytes(_smooth())
    out: dict[str, tuple[bytes, str]] = {}
    out["zero_bytes.png"] = (b"", "invalid_image")
    for pct in (10, 50, 90):
        out[f"truncated_{pct}pct.png"] = (png[: len(png) * pct // 100], "invalid_image")
        out[f"truncated_{pct}pct.jpg"] = (jpg[: len(jpg) * pct // 100], "invalid_image")
    bad_idat = bytearray(png)
    idat = bad_idat.find(b"IDAT")
    bad_idat[idat + 8 : idat + 200] = b"\x00" * 192
    out["corrupt_idat.png"] = (bytes(bad_idat), "invalid_image")
    out["png_header_only.png"] = (png[:33], "invalid_image")
    out["png_signature_only.png"] = (b"\x89PNG\r\n\x1a\n", "invalid_image")
    bad_sof = bytearray(jpg)
    sof = bad_sof.find(b"\xff\xc0")
    bad_sof[sof + 2 : sof + 12] = b"\xff" * 10
    out["corrupt_sof.jpg"] = (bytes(bad_sof), "invalid_image")
    out["jpeg_soi_then_garbage.jpg"] = (b"\xff\xd8\xff" + bytes(_noise(64, 64)), "invalid_image")
    out["text_named.png"] = (b"this is not an image at all\n" * 20, "unsupported_format")
    out["random_bytes.bin"] = (bytes(_noise(64, 64, seed=3)), "unsupported_format")
    out["jpeg_named.png"] = (jpg, "ok")
    out["png_named.dcm"] = (png, "ok")
    out["document.pdf"] = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
        "unsupported_format",
    )
    out["page.html"] = (
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        "unsupported_format",
    )
    out["drawing.svg"] = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "unsupported_format",
    )
    out["xml_prolog.svg"] = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "unsupported_format",
    )
    zbuf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("xray.png", png)
    out["archive.zip"] = (zbuf.getvalue(), "unsupported_format")
    frames = [Image.fromarray(_noise(32, 32, seed=i)) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    out["animated.gif"] = (gif.getvalue(), "unsupported_format")
    out["image.bmp"] = (_pil(Image.fromarray(_smooth(32, 32)), "BMP"), "unsupported_format")
    out["image.tiff"] = (_pil(Image.fromarray(_smooth(32, 32)), "TIFF"), "unsupported_format")
    out["image.webp"] = (_pil(Image.fromarray(_smooth(32, 32)), "WEBP"), "unsupported_format")
    out["json_body.json"] = (b'{"image": "not really"}', "unsupported_format")
    out["bomb_100000x100000.png"] = (g.png_bomb(), "image_too_large")
    out["bomb_1x2000000000.png"] = (g.png_bomb(1, 2_000_000_000), "image_too_large")
    small = bytearray(g.pillow_bytes(Image.new("L", (20, 20)), "JPEG"))
    sof0 = small.find(b"\xff\xc0")
    small[sof0 + 5 : sof0 + 9] = (60000).to_bytes(2, "big") * 2
    out["bomb_60000x60000.jpg"] = (bytes(small), "image_too_large")
    out["tiny_8x8.png"] = (g.png_bytes(_noise(8, 8)), "invalid_image")
    out["gray16.png"] = (g.png_bytes(g.gradient(128, 96, np.uint16)), "ok")
    out["palette.png"] = (g.palette_png(96, 96), "ok")
    rgba = np.dstack([_smooth(96, 96)] * 3 + [np.full((96, 96), 128, np.uint8)])
    out["rgba.png"] = (g.png_bytes(rgba), "ok")
    out["cmyk.jpg"] = (g.cmyk_jpeg(96, 96), "ok")
    out["progressive.jpg"] = (
        _pil(Image.fromarray(_smooth()), "JPEG", progressive=True, quality=85),
        "ok",
    )
    out["blank_black.png"] = (g.png_bytes(np.zeros((256, 256), np.uint8)), "ok")
    out["blank_white.png"] = (g.png_bytes(np.full((256, 256), 255, np.uint8)), "ok")
    out["noise.png"] = (g.png_bytes(_noise(256, 256, seed=7)), "ok")
    text = np.full((200, 400), 255, np.uint8)
    cv2.putText(text, "NOT AN X-RAY", (10, 110), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 0, 3)
    out["text.png"] = (g.png_bytes(text), "ok")
    from skimage import data as skdata

    coffee = cv2.resize(skdata.coffee(), (300, 200), interpolation=cv2.INTER_AREA)
    out["photo_coffee_cc0.jpg"] = (g.jpeg_bytes(coffee, quality=80), "ok")
    out["dicom_no_pixels.dcm"] = (g.dicom_bytes(None), "invalid_image")
    out["dicom_multiframe.dcm"] = (g.dicom_bytes(_smooth(64, 64), frames=4), "invalid_image")
    full = g.dicom_bytes(_smooth(128, 128))
    out["dicom_truncated.dcm"] = (full[: len(full) - 4000], "invalid_image")
    out["dicom_preamble_only.dcm"] = (b"\x00" * 128 + b"DICM", "invalid_image")
    out["dicom_monochrome1.dcm"] = (
        g.dicom_bytes(_smooth(128, 128), photometric="MONOCHROME1"),
        "ok",
    )
    out["dicom_16bit_windowed.dcm"] = (
        g.dicom_bytes(
            (g.gradient(128, 128, np.uint16) >> 4).astype(np.uint16),
            bits_stored=12,
            window=(2048.0, 1000.0),
        ),
        "ok",
    )
    out["ct_small.dcm"] = (_pydicom_file("CT_small.dcm"), "ok")
    out["mr_small.dcm"] = (_pydicom_file("MR_small.dcm"), "ok")
    out["mr_jpeg2000.dcm"] = (
        _pydicom_file("MR_small_jp2klossless.dcm"),
        "ok",
    )  # Pillow decodes J2K
    out["rt_plan_no_image.dcm"] = (_pydicom_file("rtplan.dcm"), "invalid_image")
    # A zlib bomb inside a small PNG: the decoder inflates only the declared rows, so it is safe.
    out["png_declares_small_inflates_big.png"] = (_png_zlib_liar(), "ok")  # rows past 64 ignored
    return out


def _png_zlib_liar() -> bytes:
    """Declares 64x64 but its IDAT inflates to 50 MB of zeros: must not blow up memory."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 50_000_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def main() -> None:
    if FILES.exists():
        shutil.rmtree(FILES)
    FILES.mkdir(parents=True)
    manifest = {}
    for name, (data, expected) in sorted(build().items()):
        (FILES / name).write_bytes(data)
        manifest[name] = {"decode": expected, "bytes": len(data)}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(manifest)} files written to {FILES}")


if __name__ == "__main__":
    main()
