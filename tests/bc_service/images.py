"""Images for the bc_service HTTP tests: real mini-mias mammograms when ../shared/data is
present (the trained mammogram gate accepts them), else synthetic phantoms with the gate off;
and things that are not mammograms."""

from __future__ import annotations

import csv
from functools import cache

import cv2
import numpy as np

from shared.settings import default_data_dir
from tests.imagegen import dicom_bytes, mammo_phantom, png_bytes

SIDE = 512  # mini-mias is 1024 x 1024; half of it is the pipeline's working height
MIAS = default_data_dir() / "mini-mias"
HAVE_MIAS = (MIAS / "splits.csv").exists()


@cache
def _test_rows() -> list[dict[str, str]]:
    with (MIAS / "splits.csv").open() as fh:
        test = {r["path"] for r in csv.DictReader(fh) if r["split"] == "test"}
    with (MIAS / "labels.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["path"] in test]


@cache
def mammogram(right: bool = False, seed: int = 0) -> bytes:
    """A normal mini-mias test mammogram (the ``seed``-th of its side), downscaled; or a
    phantom when the data is absent."""
    if not HAVE_MIAS:
        return png_bytes(mammo_phantom(chest_wall="right" if right else "left", seed=seed))
    side = "R" if right else "L"
    rows = [r for r in _test_rows() if r["label"] == "normal" and r["laterality"] == side]
    gray = cv2.imread(str(MIAS / rows[seed % len(rows)]["path"]), cv2.IMREAD_GRAYSCALE)
    return png_bytes(cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA))


def big_view(right: bool, seed: int, width: int = 3000, height: int = 4000) -> np.ndarray:
    """A test mammogram upscaled to ``width`` x ``height`` (a full-field digital size), its
    chest wall kept on its side."""
    small = cv2.imdecode(np.frombuffer(mammogram(right=right, seed=seed), np.uint8), 0)
    square = cv2.resize(small, (height, height), interpolation=cv2.INTER_LINEAR)
    return square[:, height - width :] if right else square[:, :width]


def not_a_mammogram() -> bytes:
    """A flat gray picture: the pipeline's decode stage refuses it (``not_a_mammogram``)
    whatever the gate model says, so the service's error path is tested deterministically.
    (Whether the trained gate refuses chest X-rays is tested with the models.)"""
    return png_bytes(np.full((256, 256), 128, np.uint8))


def chest_xray() -> bytes | None:
    """A chest X-ray from nih-cxr14's test split (a misrouted upload), None when absent."""
    root = default_data_dir() / "nih-cxr14"
    if not (root / "splits.csv").exists():
        return None
    with (root / "splits.csv").open() as fh:
        first = next(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    return (root / first).read_bytes()


NOT_MAMMOGRAMS = ("flat", "black-59-megapixels", "noise", "chest-dicom-tagged-mg")


@cache
def not_mammograms() -> dict[str, tuple[str, bytes, str] | None]:
    """Files that are not mammograms, by name, as (filename, bytes, media type) upload parts:
    a flat picture, 59 megapixels of black (under the 60-megapixel decompression limit),
    noise, and a chest X-ray in a DICOM that claims Modality MG. None where the data a file
    needs is absent: the gate model decides noise and the chest film, and it runs only with
    mini-mias present (nih-cxr14 gives the chest film)."""
    out: dict[str, tuple[str, bytes, str] | None] = {
        "flat": ("p.png", not_a_mammogram(), "image/png"),
        "black-59-megapixels": ("b.png", png_bytes(np.zeros((7600, 7800), np.uint8)), "image/png"),
        "noise": None,
        "chest-dicom-tagged-mg": None,
    }
    if HAVE_MIAS:
        noise = np.random.default_rng(0).integers(0, 256, (1024, 832), dtype=np.uint8)
        out["noise"] = ("n.png", png_bytes(noise), "image/png")
        chest = chest_xray()
        if chest is not None:
            gray = cv2.imdecode(np.frombuffer(chest, np.uint8), cv2.IMREAD_GRAYSCALE)
            dcm = dicom_bytes(gray.astype(np.uint16) * 16, bits_stored=12, modality="MG")
            out["chest-dicom-tagged-mg"] = ("c.dcm", dcm, "application/dicom")
    return out
