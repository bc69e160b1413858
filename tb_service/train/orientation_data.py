"""The orientation model's data (TensorFlow-free): every chest film through the gate's
preprocessing in each of its 8 dihedral transforms, cached once (npz under ``var/cache``).

The transform is applied to the DECODED film, before the pipeline, exactly as an upload
arrives rotated or mirrored; the pipeline's output is stored as uint8 (the gate's ``unit``
normalisation is x / 255, so this is lossless). Labels are free: self-supervised.

Training and choosing: the train and val splits of nih-cxr14 and kermany-pediatric. Reported:
their test splits, and tbx11k and hannover-covid19 in full (evaluation only, never trained or
tuned on).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shared.imaging import decode_image
from shared.settings import default_data_dir
from tb_service.orientation import N_TRANSFORMS, apply_transform
from tb_service.preprocess import GATE_INPUT_SIZE, gate_pipeline
from tb_service.train.cache import CACHE_DIR, _key, _stored
from tb_service.train.data import Record, load_dataset

log = logging.getLogger("irmi.train")

TRAIN_SETS = ("nih-cxr14", "kermany-pediatric")
EVAL_ONLY = ("tbx11k", "hannover-covid19")


@dataclass
class OrientationCache:
    x: NDArray[np.uint8]  # (N, 8, S, S): the gate input of each transform, x 255
    split: NDArray[np.str_]  # train / val / test, "eval" for the evaluation-only sets
    dataset: NDArray[np.str_]
    name: NDArray[np.str_]

    def where(self, split: str, datasets: tuple[str, ...] | None = None) -> NDArray[np.bool_]:
        m = self.split == split
        if datasets is not None:
            m &= np.isin(self.dataset, list(datasets))
        return np.asarray(m, bool)


def orientation_records(data_dir: Path | None = None) -> list[Record]:
    root = Path(data_dir or default_data_dir())
    out: list[Record] = []
    for name in TRAIN_SETS + EVAL_ONLY:
        if not (root / name).exists():
            log.warning("orientation: %s missing under %s", name, root)
            continue
        for r in load_dataset(root / name, name):
            split = "eval" if name in EVAL_ONLY else r.split
            out.append(Record(r.path, r.label, split, r.dataset, r.patient_id, r.extra))
    return out


def build_orientation_cache(
    data_dir: Path | None = None, size: int = GATE_INPUT_SIZE
) -> OrientationCache:
    recs = orientation_records(data_dir)
    if not recs:
        raise FileNotFoundError(f"no chest data under {data_dir or default_data_dir()}")
    pipe = gate_pipeline(size)
    path = CACHE_DIR / f"orientation_{size}_{_key(pipe, (str(r.path) for r in recs))}.npz"
    if (stored := _stored(path)) is not None:
        return OrientationCache(**stored)
    start = time.perf_counter()
    xs = np.empty((len(recs), N_TRANSFORMS, size, size), np.uint8)
    for i, r in enumerate(recs):
        img = decode_image(r.path.read_bytes())
        for t in range(N_TRANSFORMS):
            turned = type(img)(
                apply_transform(img.pixels, t), img.format, img.bits_stored, img.value_range
            )
            out = pipe(turned).image[:, :, 0]
            xs[i, t] = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
        if i % 500 == 0:
            log.info("orientation cache %d/%d", i, len(recs))
    cache = OrientationCache(
        x=xs,
        split=np.array([r.split for r in recs]),
        dataset=np.array([r.dataset for r in recs]),
        name=np.array([f"{r.dataset}/{r.path.name}" for r in recs]),
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vars(cache))
    log.info("orientation cache: %d films in %.0f s", len(recs), time.perf_counter() - start)
    return cache
