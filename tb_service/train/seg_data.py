"""The lung-masks films as the lung segmentation training and evaluation read them: each
film after the chest pipeline's first steps (what the crop step sees), its network input, and
its ground-truth mask at the original resolution; Dice and IoU. TensorFlow-free."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shared.imaging import decode_image, to_uint8
from shared.settings import default_data_dir
from shared.transforms import Compose
from tb_service.lungseg import SEG_INPUT_SIZE, SEG_MODEL, seg_pipeline
from tb_service.preprocess import Work
from tb_service.train.results import MODELS

DATASET = "lung-masks"
SEG_VERSION = "1"
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.3, 0.71, 0.05))


def seg_folder() -> Path:
    return MODELS / SEG_MODEL / SEG_VERSION


@dataclass
class Film:
    id: str
    split: str
    work: Work  # after gray, downscale, median: what the crop step sees
    x: NDArray[np.float32]  # the network input (S, S, 1)
    mask: NDArray[np.bool_]  # ground truth at the original resolution


def load_films(data_dir: Path | None, size: int = SEG_INPUT_SIZE) -> tuple[list[Film], list[str]]:
    """Every film with a non-empty mask, and the ids left out (empty published masks)."""
    root = Path(data_dir or default_data_dir()) / DATASET
    with (root / "splits.csv").open() as fh:
        splits = {r["id"]: r["split"] for r in csv.DictReader(fh)}
    with (root / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    pipe = seg_pipeline(size)
    head: Compose[Work] = Compose(list(pipe)[:3])
    films, empty = [], []
    for row in rows:
        mask = to_uint8(decode_image((root / row["mask"]).read_bytes()), gray=True) > 127
        if not mask.any():
            empty.append(row["id"])
            continue
        decoded = decode_image((root / row["image"]).read_bytes())
        work = head(decoded)
        x = pipe.transforms[-1](pipe.transforms[-2](work)).image
        films.append(Film(row["id"], splits[row["id"]], work, x, mask))
    return films, empty


def dice(pred: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    inter = float(np.logical_and(pred, truth).sum())
    total = float(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * inter / total


def iou(pred: NDArray[np.bool_], truth: NDArray[np.bool_]) -> float:
    union = float(np.logical_or(pred, truth).sum())
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum()) / union
