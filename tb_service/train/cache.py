"""Preprocess every image once and cache the tensors (npz under ``var/cache``, never committed).

TensorFlow-free. The cache key is the pipeline description plus the list of files, so a
change of preprocessing rebuilds the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.imaging import DecodedImage, decode_image, to_uint8
from shared.settings import REPO_ROOT, default_data_dir
from shared.transforms import Compose
from tb_service.preprocess import (
    GATE_INPUT_SIZE,
    INPUT_SIZE,
    ChestInput,
    chest_pipeline,
    gate_pipeline,
)
from tb_service.train.data import Record, load_dataset
from tb_service.train.negatives import dicom_images, natural_images, rotate90, synthetic_images

log = logging.getLogger("irmi.train")

CACHE_DIR = REPO_ROOT / "var" / "cache"
NIH, KER = "nih-cxr14", "kermany-pediatric"
CHEST_SETS = (NIH, KER)
EVAL_SETS = ("tbx11k",)
RAW_SIDE = 64  # raw (un-preprocessed) thumbnails for the shortcut baselines


def _key(pipe: Compose[Any], names: Iterable[str]) -> str:
    h = hashlib.sha256(json.dumps(pipe.describe(), sort_keys=True).encode())
    for n in names:
        h.update(n.encode())
    return h.hexdigest()[:12]


def _stored(path: Path) -> dict[str, Any] | None:
    """The arrays of a cache file written earlier, or None."""
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _store(path: Path, cache: ChestCache | GateCache, n: int, start: float) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vars(cache))
    log.info("cache: %d images in %.0f s -> %s", n, time.perf_counter() - start, path)


def _raw_features(img: DecodedImage) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """A squashed raw thumbnail and a 16-bin normalised histogram of the raw image."""
    g = to_uint8(img)
    thumb = np.asarray(cv2.resize(g, (RAW_SIDE, RAW_SIDE), interpolation=cv2.INTER_AREA), np.uint8)
    hist = np.bincount((g // 16).ravel(), minlength=16).astype(np.float32)
    return thumb, hist / max(float(hist.sum()), 1.0)


@dataclass
class ChestCache:
    """Arrays of the chest sets, one row per image."""

    x: NDArray[np.float16]  # (N, S, S, 1)
    abnormal: NDArray[np.int8]
    subtype: NDArray[np.int8]
    split: NDArray[np.str_]
    dataset: NDArray[np.str_]
    path: NDArray[np.str_]
    crop_box: NDArray[np.int32]  # (N, 4) original pixels
    orig_size: NDArray[np.int32]  # (N, 2) decoded (w, h)
    source_size: NDArray[np.int32]  # (N, 2) the source's original (w, h) from labels.csv
    raw: NDArray[np.uint8]  # (N, 64, 64) raw thumbnails
    hist: NDArray[np.float32]  # (N, 16)

    def where(
        self, split: str | None = None, datasets: Iterable[str] | None = None
    ) -> NDArray[np.bool_]:
        m = np.ones(len(self.split), bool)
        if split is not None:
            m &= self.split == split
        if datasets is not None:
            m &= np.isin(self.dataset, list(datasets))
        return m


def chest_records(data_dir: Path | None = None) -> list[Record]:
    root = Path(data_dir or default_data_dir())
    out: list[Record] = []
    for name in CHEST_SETS + EVAL_SETS:
        if (root / name).exists():
            recs = load_dataset(root / name, name)
            if name in EVAL_SETS:  # evaluation only: never a train/val split
                recs = [
                    Record(r.path, r.label, "eval", r.dataset, r.patient_id, r.extra) for r in recs
                ]
            out.extend(recs)
    return out


def build_chest_cache(data_dir: Path | None = None, size: int = INPUT_SIZE) -> ChestCache:
    recs = chest_records(data_dir)
    if not recs:
        raise FileNotFoundError(f"no chest data under {data_dir or default_data_dir()}")
    pipe = chest_pipeline(size)
    path = CACHE_DIR / f"chest_{size}_{_key(pipe, (str(r.path) for r in recs))}.npz"
    if (stored := _stored(path)) is not None:
        return ChestCache(**stored)
    start = time.perf_counter()
    xs, boxes, sizes, src, raws, hists = [], [], [], [], [], []
    for i, r in enumerate(recs):
        img = decode_image(r.path.read_bytes())
        out: ChestInput = pipe(img)
        xs.append(out.image.astype(np.float16))
        boxes.append(out.crop_box)
        sizes.append(out.original_size)
        ow = int(r.extra.get("orig_width") or out.original_size[0])
        oh = int(r.extra.get("orig_height") or out.original_size[1])
        src.append((ow, oh))
        thumb, hist = _raw_features(img)
        raws.append(thumb)
        hists.append(hist)
        if i % 500 == 0:
            log.info("chest cache %d/%d", i, len(recs))
    cache = ChestCache(
        x=np.stack(xs),
        abnormal=np.array([r.abnormal for r in recs], np.int8),
        subtype=np.array([r.subtype for r in recs], np.int8),
        split=np.array([r.split for r in recs]),
        dataset=np.array([r.dataset for r in recs]),
        path=np.array([f"{r.dataset}/{r.path.name}" for r in recs]),
        crop_box=np.array(boxes, np.int32),
        orig_size=np.array(sizes, np.int32),
        source_size=np.array(src, np.int32),
        raw=np.stack(raws),
        hist=np.stack(hists),
    )
    _store(path, cache, len(recs), start)
    return cache


@dataclass
class GateCache:
    x: NDArray[np.float16]
    y: NDArray[np.int8]  # 1 = chest X-ray
    split: NDArray[np.str_]
    source: NDArray[np.str_]
    name: NDArray[np.str_]


def build_gate_cache(
    data_dir: Path | None = None, size: int = GATE_INPUT_SIZE, rotate_every: int = 3
) -> GateCache:
    root = Path(data_dir or default_data_dir())
    chest = chest_records(root)
    mias = load_dataset(root / "mini-mias", "mini-mias") if (root / "mini-mias").exists() else []
    pipe = gate_pipeline(size)
    names = [str(r.path) for r in chest + mias]
    path = CACHE_DIR / f"gate_{size}_{_key(pipe, names)}.npz"
    if (stored := _stored(path)) is not None:
        return GateCache(**stored)
    start = time.perf_counter()
    xs: list[NDArray[np.float16]] = []
    ys: list[int] = []
    splits: list[str] = []
    sources: list[str] = []
    item_names: list[str] = []

    def add(img: DecodedImage, y: int, split: str, source: str, name: str) -> None:
        xs.append(pipe(img).image.astype(np.float16))
        ys.append(y)
        splits.append(split)
        sources.append(source)
        item_names.append(name)

    for i, r in enumerate(chest):
        img = decode_image(r.path.read_bytes())
        add(img, 1, r.split, r.dataset, f"{r.dataset}/{r.path.name}")
        if r.dataset in CHEST_SETS and i % rotate_every == 0:
            k = 1 if (i // rotate_every) % 2 == 0 else 3
            add(rotate90(img, k), 0, r.split, "rotated_chest", f"rot{k}/{r.path.name}")
    for r in mias:
        add(decode_image(r.path.read_bytes()), 0, r.split, "mini-mias", f"mias/{r.path.name}")
    for neg in (*natural_images(), *dicom_images(), *synthetic_images()):
        add(neg.image, 0, neg.split, neg.source, neg.name)
    cache = GateCache(
        x=np.stack(xs),
        y=np.array(ys, np.int8),
        split=np.array(splits),
        source=np.array(sources),
        name=np.array(item_names),
    )
    _store(path, cache, len(ys), start)
    return cache
