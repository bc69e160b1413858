"""Images for the bc_service HTTP tests: a mammogram (real mini-mias when present, else a
synthetic phantom), and things that are not mammograms."""

from __future__ import annotations

import csv
from functools import cache

import cv2
import numpy as np

from shared.settings import default_data_dir
from tests.imagegen import mammo_phantom, png_bytes

SIDE = 512  # mini-mias is 1024 x 1024; half of it is the pipeline's working height


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
    real = real_mias("normal", "R" if right else "L") if seed == 0 else None
    if real is not None:
        return real
    return png_bytes(mammo_phantom(chest_wall="right" if right else "left", seed=seed))


def photo() -> bytes:
    """A colourful natural-looking picture: not a mammogram."""
    rng = np.random.default_rng(1)
    img = np.zeros((SIDE, SIDE, 3), np.uint8)
    img[: SIDE // 2] = (120, 180, 240)  # sky
    img[SIDE // 2 :] = (40, 160, 60)  # grass
    img = cv2.add(img, rng.integers(0, 30, img.shape, dtype=np.uint8))
    return png_bytes(img)
