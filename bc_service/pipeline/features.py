"""Model inputs computed from arrays, shared by training and serving (no TensorFlow here)."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

GATE_SIZE = 96  # gate input: whole image squashed to GATE_SIZE x GATE_SIZE, gray, [0, 1]
PATCH_SIZE = 64  # patch classifier input at working resolution (~400 um/px on mini-mias)
WORK_HEIGHT = 512  # the cropped breast is resized to this height (aspect kept)
PATCH_LABELS = ["normal", "benign", "malignant"]

# Per class map - benign, malignant, and "lesion" (benign + malignant = 1 - normal, the
# patch model's strongest signal) - four statistics over the patches in the window.
VIEW_CLASSES = ("benign", "malignant", "lesion")
VIEW_STATS = ("max", "top3_mean", "mean", "frac_over_half")
VIEW_FEATURES = [f"{cls}_{stat}" for cls in VIEW_CLASSES for stat in VIEW_STATS]


def gate_input(gray8: NDArray[np.uint8], size: int = GATE_SIZE) -> NDArray[np.float32]:
    """(1, size, size, 1) float32 in [0, 1] from a whole 8-bit gray image."""
    small = cv2.resize(gray8, (size, size), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) / 255.0)[None, :, :, None]


def patches_at(
    image8: NDArray[np.uint8], centres: NDArray[np.int64], size: int = PATCH_SIZE
) -> NDArray[np.float32]:
    """(N, size, size, 1) float32 [0, 1] patches centred at (row, col) ``centres``; the image
    is zero-padded so patches at the border stay full size."""
    half = size // 2
    padded = np.pad(image8, half, mode="constant")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    rows = np.clip(centres[:, 0], 0, image8.shape[0] - 1)
    cols = np.clip(centres[:, 1], 0, image8.shape[1] - 1)
    out = windows[rows, cols].astype(np.float32) / 255.0
    return out[:, :, :, None]


def view_features(probs: NDArray[np.float32]) -> NDArray[np.float32]:
    """(len(VIEW_FEATURES),) summary of patch probabilities (N, 3) [normal, benign, malignant]."""
    if probs.size == 0:
        probs = np.array([[1.0, 0.0, 0.0]], np.float32)
    maps = (probs[:, 1], probs[:, 2], probs[:, 1] + probs[:, 2])
    feats: list[float] = []
    for p in maps:
        top = np.sort(p)[::-1][:3]
        feats += [float(p.max()), float(top.mean()), float(p.mean()), float((p > 0.5).mean())]
    return np.asarray(feats, dtype=np.float32)
