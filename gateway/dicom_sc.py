"""The overlay as a DICOM Secondary Capture for the PACS: the film at display size with the
score-map overlay the web UI shows (rendered by :mod:`gateway.score_overlay`, stored with the
study) blended over it, and a caption band burned in below: the category in words, the score
and threshold, and that this is a screening aid, not a diagnosis. Same study and patient as
the source image (highdicom ``SCImage.from_ref_dataset``), its own series.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from gateway.score_overlay import display_scale
from shared.contracts.common import CropBox
from shared.imaging import decode_image, to_uint8

CAPTION_PX = 28


def compose(
    source: bytes, overlay_png: bytes | None, covers: CropBox | None, caption: str
) -> NDArray[np.uint8]:
    """RGB uint8: the source film at display size, the RGBA overlay alpha-blended over the
    part of the film it covers, the caption band under it."""
    image = decode_image(source)
    gray = to_uint8(image)
    f = display_scale(image.width, image.height)
    w, h = max(1, round(image.width * f)), max(1, round(image.height * f))
    base = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    rgb = np.repeat(base[:, :, None], 3, axis=2)
    if overlay_png is not None and covers is not None:
        decoded = cv2.imdecode(np.frombuffer(overlay_png, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is not None and decoded.ndim == 3 and decoded.shape[2] == 4:
            rgba = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA).astype(np.float32)
            x0, y0 = round(covers.x0 * f), round(covers.y0 * f)
            x1, y1 = min(w, round(covers.x1 * f)), min(h, round(covers.y1 * f))
            if x1 > x0 and y1 > y0:
                part = cv2.resize(rgba, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
                alpha = part[:, :, 3:4] / 255.0
                region = rgb[y0:y1, x0:x1]
                rgb[y0:y1, x0:x1] = region * (1 - alpha) + part[:, :, :3] * alpha
    band = np.zeros((CAPTION_PX, w, 3), np.float32)
    out = np.clip(np.concatenate([rgb, band], axis=0) + 0.5, 0, 255).astype(np.uint8)
    scale = 0.45 if w >= 600 else 0.3
    cv2.putText(
        out,
        caption[:160],
        (6, h + CAPTION_PX - 9),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


def build_sc(
    ref: Dataset, pixels: NDArray[np.uint8], series_uid: str, sop_uid: str, number: int
) -> Dataset:
    """A Secondary Capture of RGB ``pixels`` in ``ref``'s study."""
    import highdicom as hd

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=9902,
        sop_instance_uid=sop_uid,
        instance_number=number,
        manufacturer="IRMI",
        patient_orientation=("L", "F"),  # replaced below: the source's own, or empty
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    # Type 2: the source's orientation when it gives one (the overlay keeps its geometry),
    # else empty (unknown) rather than a guess.
    sc.PatientOrientation = list(ref.get("PatientOrientation", None) or [])
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "IRMI overlay (screening aid, not a diagnosis)"
    return sc


def encode(ds: Dataset) -> bytes:
    """Part 10 bytes of a dataset highdicom built."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
