"""Images for the bc_service HTTP tests: a mammogram (real mini-mias when present, else a
synthetic phantom), and things that are not mammograms."""

from __future__ import annotations

import csv
from functools import cache

import cv2
import numpy as np

from shared.settings import default_data_dir
from tests.imagegen import png_bytes

SIDE = 256  # small: keeps the suite fast


def phantom(side: int = SIDE, right: bool = False, seed: int = 0) -> np.ndarray:
    """A breast-like half ellipse against the left (or right) edge on a dark background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((side, side), np.float32)
    cx = side - 1 if right else 0
    cv2.ellipse(img, (cx, side // 2), (int(side * 0.55), int(side * 0.42)), 0, 0, 360, 1.0, -1)
    tissue = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), side / 40)
    tissue = (tissue - tissue.min()) / (np.ptp(tissue) + 1e-6)
    out = img * (90 + 110 * tissue)
    return np.clip(out + rng.normal(0, 3, out.shape), 0, 255).astype(np.uint8)


@cache
def real_mias(label: str = "normal", laterality: str | None = None) -> bytes | None:
    """A mini-mias test-split image, downscaled to SIDE, or None when the data is absent."""
    root = default_data_dir() / "mini-mias"
    if not (root / "labels.csv").exists():
        return None
    with (root / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (root / "splits.csv").open() as fh:
        split = {r["path"]: r["split"] for r in csv.DictReader(fh)}
    for row in rows:
        if split.get(row["path"]) != "test" or row["label"] != label:
            continue
        if laterality and row["laterality"] != laterality:
            continue
        path = root / row["path"]
        if path.exists():
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            return png_bytes(cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    return None


def mammogram(right: bool = False, seed: int = 0) -> bytes:
    real = real_mias("normal", "R" if right else "L")
    return real if real is not None else png_bytes(phantom(right=right, seed=seed))


def photo() -> bytes:
    """A colourful natural-looking picture: not a mammogram."""
    rng = np.random.default_rng(1)
    img = np.zeros((SIDE, SIDE, 3), np.uint8)
    img[: SIDE // 2] = (120, 180, 240)  # sky
    img[SIDE // 2 :] = (40, 160, 60)  # grass
    img = cv2.add(img, rng.integers(0, 30, img.shape, dtype=np.uint8))
    return png_bytes(img)
