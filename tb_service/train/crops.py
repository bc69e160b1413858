"""The served chest pipeline split in two, and a cache of its first half.

``head`` = every step of :func:`tb_service.preprocess.chest_pipeline` before CLAHE (decode to
8-bit gray, downscale to the working side, denoise, lung crop): its uint8 crops are cached
once (npz under ``var/cache``, never committed). ``tail`` = CLAHE, square resize and per-image
normalisation, the served steps themselves. Training augments the cached crops and runs the
tail on them, so training and serving share every preprocessing step. TensorFlow-free.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.imaging import decode_image
from shared.settings import default_data_dir
from shared.transforms import Compose, stage_name
from tb_service.preprocess import INPUT_SIZE, ChestInput, Work, chest_pipeline
from tb_service.train.cache import CACHE_DIR, CHEST_SETS, _key
from tb_service.train.data import Record, load_dataset

log = logging.getLogger("irmi.train")

TAIL_START = "clahe"
EVAL_ONLY = ("tbx11k", "hannover-covid19")


def split_pipeline(pipe: Compose[ChestInput]) -> tuple[Compose[Work], Compose[ChestInput]]:
    """(head, tail) of a chest pipeline, cut before its CLAHE step."""
    names = pipe.stage_names()
    if TAIL_START not in names:
        raise ValueError(f"pipeline has no {TAIL_START!r} step: {names}")
    k = names.index(TAIL_START)
    return Compose(pipe.transforms[:k]), Compose(pipe.transforms[k:])


def crop_records(data_dir: Path | None = None) -> list[Record]:
    """The chest sets (their splits) and the evaluation-only sets (split ``eval``)."""
    root = Path(data_dir or default_data_dir())
    out: list[Record] = []
    for name in (*CHEST_SETS, *EVAL_ONLY):
        if not (root / name).exists():
            continue
        recs = load_dataset(root / name, name)
        if name in EVAL_ONLY:
            recs = [Record(r.path, r.label, "eval", r.dataset, r.patient_id, r.extra) for r in recs]
        out.extend(recs)
    return out


@dataclass
class CropCache:
    """uint8 lung crops at the working resolution (variable shapes, stored flat)."""

    flat: NDArray[np.uint8]
    offset: NDArray[np.int64]  # (N,) start of each crop in ``flat``
    shape: NDArray[np.int32]  # (N, 2) h, w
    scale: NDArray[np.float32]  # working = original * scale
    abnormal: NDArray[np.int8]
    subtype: NDArray[np.int8]
    split: NDArray[np.str_]
    dataset: NDArray[np.str_]
    path: NDArray[np.str_]
    patient: NDArray[np.str_]
    crop_box: NDArray[np.int32]  # (N, 4) original pixels
    orig_size: NDArray[np.int32]  # (N, 2) decoded (w, h)
    reasons: NDArray[np.str_]  # reliability reasons the head found, ","-joined

    def __len__(self) -> int:
        return len(self.split)

    def crop(self, i: int) -> NDArray[np.uint8]:
        h, w = (int(v) for v in self.shape[i])
        o = int(self.offset[i])
        return self.flat[o : o + h * w].reshape(h, w)

    def work(self, i: int, pixels: NDArray[np.uint8] | None = None) -> Work:
        """The head's output for image ``i`` (optionally with other pixels of the same size)."""
        px = self.crop(i) if pixels is None else pixels
        box = tuple(int(v) for v in self.crop_box[i])
        size = (int(self.orig_size[i, 0]), int(self.orig_size[i, 1]))
        return Work(px, box, size, float(self.scale[i]))  # type: ignore[arg-type]

    def where(
        self, split: str | None = None, datasets: Iterable[str] | None = None
    ) -> NDArray[np.bool_]:
        m = np.ones(len(self), bool)
        if split is not None:
            m &= self.split == split
        if datasets is not None:
            m &= np.isin(self.dataset, list(datasets))
        return m


def content_key(c: CropCache) -> str:
    """A short hash of the crops themselves (a changed lung crop changes it)."""
    h = hashlib.sha256(c.shape.tobytes())
    h.update(c.crop_box.tobytes())
    h.update(c.flat[:: max(1, len(c.flat) // 100_000)].tobytes())
    return h.hexdigest()[:12]


def tail_inputs(c: CropCache, idx: Iterable[int], tail: Compose[ChestInput]) -> NDArray[np.float32]:
    """Network inputs (N, S, S, 1) of the un-augmented crops ``idx``."""
    return np.stack([tail(c.work(int(i))).image for i in idx]).astype(np.float32)


def _reasons(work: Any) -> str:
    found = getattr(work, "reasons", None) or []
    return ",".join(str(r) for r in found)


def build_crop_cache(data_dir: Path | None = None, size: int = INPUT_SIZE) -> CropCache:
    """Run the head on every image once; reuse the npz when pipeline and files are unchanged."""
    recs = crop_records(data_dir)
    if not recs:
        raise FileNotFoundError(f"no chest data under {data_dir or default_data_dir()}")
    pipe = chest_pipeline(size)
    head, _tail = split_pipeline(pipe)
    path = CACHE_DIR / f"crops_{_key(head, (str(r.path) for r in recs))}.npz"
    if path.exists():
        with np.load(path) as z:
            return CropCache(**{k: z[k] for k in z.files})
    start = time.perf_counter()
    crops: list[NDArray[np.uint8]] = []
    works: list[Work] = []
    reasons: list[str] = []
    for i, r in enumerate(recs):
        work: Work = head(decode_image(r.path.read_bytes()))
        crops.append(np.ascontiguousarray(work.pixels, np.uint8))
        works.append(work)
        reasons.append(_reasons(work))
        if i % 500 == 0:
            log.info("crop cache %d/%d (%s)", i, len(recs), stage_name(head.transforms[-1]))
    shapes = np.array([cr.shape[:2] for cr in crops], np.int32)
    sizes = shapes[:, 0].astype(np.int64) * shapes[:, 1]
    cache = CropCache(
        flat=np.concatenate([cr.ravel() for cr in crops]),
        offset=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        shape=shapes,
        scale=np.array([w.scale for w in works], np.float32),
        abnormal=np.array([r.abnormal for r in recs], np.int8),
        subtype=np.array([r.subtype for r in recs], np.int8),
        split=np.array([r.split for r in recs]),
        dataset=np.array([r.dataset for r in recs]),
        path=np.array([f"{r.dataset}/{r.path.name}" for r in recs]),
        patient=np.array([r.patient_id for r in recs]),
        crop_box=np.array([w.crop_box for w in works], np.int32),
        orig_size=np.array([w.original_size for w in works], np.int32),
        reasons=np.array(reasons),
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vars(cache))
    log.info("crop cache: %d images in %.0f s -> %s", len(recs), time.perf_counter() - start, path)
    return cache
