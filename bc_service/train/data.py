"""Data loaders for the mammography models: no TensorFlow here (unit-tested in ``make test``).

Everything goes through the serving pipeline's own stages (``preprocess_stages``), so the
patches the patch model learns from are the pixels it sees in service.
"""

from __future__ import annotations

import csv
import functools
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.features import PATCH_SIZE, gate_input, patches_at
from bc_service.pipeline.stages import MammoState, preprocess_stages
from shared.imaging import DecodedImage, decode_image, to_uint8
from shared.transforms import Compose

log = logging.getLogger("irmi.bc.train")

LABELS = ["normal", "benign", "malignant"]
Split = str  # "train" | "val" | "test"


@dataclass
class Lesion:
    x: int
    y: int
    radius: int
    severity: str  # benign | malignant
    abnormality: str


@dataclass
class MiasCase:
    path: str
    label: str
    laterality: str
    split: Split
    lesions: list[Lesion] = field(default_factory=list)  # only those with coordinates
    spread: bool = False  # abnormal with no coordinates (spread calcifications)


@dataclass
class Prepared:
    """One case after decode → orientation → crop → enhance (chest wall left)."""

    case: MiasCase
    enhanced: NDArray[np.uint8]
    mask: NDArray[np.bool_]
    # Lesions in working coordinates: (x, y, radius), severity index 1 benign / 2 malignant.
    lesions_work: list[tuple[float, float, float, int]]
    state: MammoState


def read_mias(root: Path) -> list[MiasCase]:
    with (root / "splits.csv").open() as fh:
        splits = {r["path"]: r["split"] for r in csv.DictReader(fh)}
    cases: dict[str, MiasCase] = {}
    with (root / "labels.csv").open() as fh:
        for r in csv.DictReader(fh):
            cases[r["path"]] = MiasCase(r["path"], r["label"], r["laterality"], splits[r["path"]])
    with (root / "lesions.csv").open() as fh:
        for r in csv.DictReader(fh):
            c = cases[r["path"]]
            if r["x"] and r["y"] and r["radius"]:
                c.lesions.append(
                    Lesion(
                        int(r["x"]), int(r["y"]), int(r["radius"]), r["severity"], r["abnormality"]
                    )
                )
            else:
                c.spread = True
    return list(cases.values())


def prepare(root: Path, case: MiasCase) -> Prepared:
    img = decode_image((root / case.path).read_bytes())
    state: MammoState = Compose[MammoState](preprocess_stages())(MammoState(image=img))
    assert state.enhanced is not None and state.work_mask is not None
    lw = []
    for les in case.lesions:
        wx, wy = state.to_work(les.x, les.y)
        lw.append((wx, wy, les.radius * state.scale, LABELS.index(les.severity)))
    return Prepared(case, state.enhanced, state.work_mask, lw, state)


@functools.cache
def prepare_all(root: Path) -> tuple[Prepared, ...]:
    """Every mini-mias case under ``root`` through decode → orientation → crop → enhance,
    memoised per folder; the original pixels are dropped to keep memory small."""
    out = []
    for case in read_mias(root):
        p = prepare(root, case)
        p.state.gray8 = None
        p.state.mask = None
        p.state.image = DecodedImage(np.zeros((1, 1), np.uint8), "png", 8, (0.0, 255.0))
        out.append(p)
    return tuple(out)


def by_split(items: Iterable[Prepared], split: Split) -> list[Prepared]:
    return [p for p in items if p.case.split == split]


def _disc_offsets(rng: np.random.Generator, n: int, radius: float) -> NDArray[np.float64]:
    ang = rng.uniform(0, 2 * np.pi, n)
    rad = radius * np.sqrt(rng.uniform(0, 1, n))
    return np.stack([rad * np.sin(ang), rad * np.cos(ang)], axis=1)  # (dy, dx)


def sample_patches(
    items: list[Prepared],
    *,
    per_lesion: int,
    normal_per_image: int,
    seed: int,
    augment: bool,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Lesion patches (centre jittered inside the lesion) labelled by severity, and normal
    tissue patches from breast pixels away from every lesion, half of them drawn towards dense
    tissue (images with spread, unlocated calcifications give no normal patches). Returns
    (N, 64, 64, 1) float32 patches and their labels."""
    rng = np.random.default_rng(seed)
    xs: list[NDArray[np.float32]] = []
    ys: list[int] = []
    for it in items:
        h, w = it.mask.shape
        for lx, ly, lr, sev in it.lesions_work:
            jitter = min(0.6 * lr, 24.0) + 2.0
            off = _disc_offsets(rng, per_lesion, jitter)
            c = np.stack([ly + off[:, 0], lx + off[:, 1]], axis=1).round().astype(np.int64)
            c[:, 0] = np.clip(c[:, 0], 0, h - 1)
            c[:, 1] = np.clip(c[:, 1], 0, w - 1)
            xs.append(patches_at(it.enhanced, c))
            ys += [sev] * len(c)
        if it.case.spread or normal_per_image == 0:
            continue
        yy, xx = np.nonzero(it.mask)
        if yy.size == 0:
            continue
        far = np.ones(yy.size, bool)
        for lx, ly, lr, _ in it.lesions_work:
            far &= (yy - ly) ** 2 + (xx - lx) ** 2 > (lr + PATCH_SIZE / 2) ** 2
        idx = np.flatnonzero(far)
        if idx.size == 0:
            continue
        # Half uniform over the breast, half weighted towards dense (bright) tissue: the hard
        # negatives that otherwise light up the malignant heatmap of every dense breast.
        n_uni = min(normal_per_image - normal_per_image // 2, idx.size)
        uni = rng.choice(idx, size=n_uni, replace=False)
        bright = it.enhanced[yy[idx], xx[idx]].astype(np.float64) ** 3 + 1.0
        n_hard = min(normal_per_image // 2, idx.size)
        hard = rng.choice(idx, size=n_hard, replace=False, p=bright / bright.sum())
        pick = np.concatenate([uni, hard])
        c = np.stack([yy[pick], xx[pick]], axis=1).astype(np.int64)
        xs.append(patches_at(it.enhanced, c))
        ys += [0] * len(c)
    x = np.concatenate(xs) if xs else np.zeros((0, PATCH_SIZE, PATCH_SIZE, 1), np.float32)
    y = np.asarray(ys, dtype=np.int64)
    if augment and len(x):
        x = augment_patches(x, rng)
    return x, y


def augment_patches(
    x: NDArray[np.float32], rng: np.random.Generator, bias: float = 0.05
) -> NDArray[np.float32]:
    """Random flips, quarter turns and a small brightness/contrast change, per patch (the
    same on every channel); ``bias=0`` keeps zero pixels (outside the breast) at zero and
    draws no bias at all."""
    out = x.copy()
    flip_v = rng.random(len(x)) < 0.5
    out[flip_v] = out[flip_v, ::-1]
    flip_h = rng.random(len(x)) < 0.5
    out[flip_h] = out[flip_h, :, ::-1]
    k = rng.integers(0, 4, len(x))
    for q in (1, 2, 3):
        sel = k == q
        out[sel] = np.rot90(out[sel], q, axes=(1, 2))
    gain = rng.uniform(0.9, 1.1, (len(x), 1, 1, 1)).astype(np.float32)
    out = out * gain
    if bias:
        out = out + rng.uniform(-bias, bias, (len(x), 1, 1, 1)).astype(np.float32)
    res: NDArray[np.float32] = np.clip(out, 0.0, 1.0).astype(np.float32)
    return res


# --------------------------------------------------------------------------- gate data


def _read_split_csv(folder: Path) -> list[tuple[str, str]]:
    with (folder / "splits.csv").open() as fh:
        return [(r["path"], r["split"]) for r in csv.DictReader(fh)]


def gate_array(gray8: NDArray[np.uint8]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = gate_input(gray8)[0]
    return out


def _file_gray(path: Path) -> NDArray[np.uint8]:
    return to_uint8(decode_image(path.read_bytes()))


def synthetic_negatives(n: int, seed: int) -> list[NDArray[np.uint8]]:
    """Noise, gradients, flat-ish images, random shapes and checkerboards."""
    rng = np.random.default_rng(seed)
    out: list[NDArray[np.uint8]] = []
    for i in range(n):
        kind = i % 5
        h, w = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        a: NDArray[np.float64]
        if kind == 0:
            a = rng.integers(0, 256, (h, w)).astype(np.float64)
        elif kind == 1:
            a = np.tile(np.linspace(rng.uniform(0, 100), rng.uniform(150, 255), w), (h, 1))
        elif kind == 2:
            a = np.full((h, w), rng.uniform(0, 255)) + rng.normal(0, 8, (h, w))
        elif kind == 3:
            a = np.zeros((h, w))
            for _ in range(int(rng.integers(1, 6))):
                cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
                r = int(rng.integers(5, max(6, min(h, w) // 2)))
                cv2.circle(a, (cx, cy), r, float(rng.uniform(50, 255)), -1)
        else:
            s = int(rng.integers(4, 32))
            yy, xx = np.mgrid[0:h, 0:w]
            a = (((yy // s) + (xx // s)) % 2) * 255.0
        out.append(np.clip(a, 0, 255).astype(np.uint8))
    return out


def natural_images() -> list[NDArray[np.uint8]]:
    """Photographs and illustrations shipped with scikit-image and scikit-learn."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    names = [
        "astronaut", "camera", "coffee", "chelsea", "coins", "horse", "moon", "page", "rocket",
        "text", "clock", "hubble_deep_field", "immunohistochemistry", "grass", "gravel", "brick",
        "cell", "colorwheel", "logo", "motorcycle_left", "motorcycle_right", "retina",
        "microaneurysms", "binary_blobs", "checkerboard", "cat",
    ]  # fmt: skip
    out: list[NDArray[np.uint8]] = []
    for n in names:
        fn = getattr(skd, n, None)
        if fn is None:
            continue
        try:
            a = np.asarray(fn())
        except Exception as exc:  # a dataset needing a download (pooch) is skipped
            log.info("skimage.data.%s unavailable: %s", n, type(exc).__name__)
            continue
        out.append(_to_gray8(a))
    for a in load_sample_images().images:
        out.append(_to_gray8(np.asarray(a)))
    return out


def _to_gray8(image: NDArray[Any]) -> NDArray[np.uint8]:
    a = image[..., :3].astype(np.float32) if image.ndim == 3 else image.astype(np.float32)
    if a.ndim == 3:
        a = a @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = float(a.min()), float(a.max())
    out: NDArray[np.uint8] = np.clip((a - lo) * 255.0 / max(hi - lo, 1e-6), 0, 255).astype(np.uint8)
    return out


def dicom_negatives() -> list[NDArray[np.uint8]]:
    """Single-frame CT/MR/other images from pydicom's bundled test files."""
    import pydicom
    from pydicom.data import get_testdata_files

    out: list[NDArray[np.uint8]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in sorted(get_testdata_files("*.dcm")):
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                if str(ds.get("Modality", "")) == "MG" or int(ds.get("NumberOfFrames", 1) or 1) > 1:
                    continue
                img = decode_image(Path(f).read_bytes())
            except Exception as exc:  # compressed syntaxes this install cannot decode
                log.info("skipping %s: %s", Path(f).name, type(exc).__name__)
                continue
            g = to_uint8(img)
            if g.ndim == 2 and min(g.shape) >= 32:
                out.append(g)
    return out


def mammo_augment(gray: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
    """A plausible variant of a mammogram: mirror, crop/zoom, small rotation, gamma."""
    a = gray[:, ::-1] if rng.random() < 0.5 else gray
    h, w = a.shape
    s = rng.uniform(0.75, 1.0)
    crop_h, crop_w = int(h * s), int(w * rng.uniform(0.6, 1.0))
    y0 = int(rng.integers(0, h - crop_h + 1))
    x0 = int(rng.integers(0, w - crop_w + 1))
    crop = a[y0 : y0 + crop_h, x0 : x0 + crop_w]
    m = cv2.getRotationMatrix2D((crop_w / 2, crop_h / 2), rng.uniform(-10, 10), 1.0)
    rotated = cv2.warpAffine(crop, m, (crop_w, crop_h), borderMode=cv2.BORDER_CONSTANT)
    gamma = rng.uniform(0.7, 1.4)
    out: NDArray[np.uint8] = np.clip(255.0 * (rotated / 255.0) ** gamma, 0, 255).astype(np.uint8)
    return out


@dataclass
class GateData:
    x: NDArray[np.float32]
    y: NDArray[np.float32]
    source: list[str]


def gate_dataset(data_dir: Path, split: Split, *, seed: int, max_chest: int) -> GateData:
    """Mammograms (label 1) against chest X-rays, photographs, other DICOM and synthetic images
    (label 0). Chest sets and mini-mias use their own splits; the small fixed sets (photos,
    DICOM test files, synthetic) are split by a seeded shuffle 60/20/20."""
    rng = np.random.default_rng(seed)
    xs: list[NDArray[np.float32]] = []
    ys: list[float] = []
    src: list[str] = []

    def add(g: NDArray[np.uint8], label: float, name: str) -> None:
        xs.append(gate_array(g))
        ys.append(label)
        src.append(name)

    mias = data_dir / "mini-mias"
    for case in read_mias(mias):
        if case.split != split:
            continue
        g = _file_gray(mias / case.path)
        add(g, 1.0, "mini-mias")
        if split == "train":
            for _ in range(2):
                add(mammo_augment(g, rng), 1.0, "mini-mias-aug")
    for folder in ("nih-cxr14", "kermany-pediatric"):
        d = data_dir / folder
        if not (d / "splits.csv").exists():
            continue
        files = [p for p, s in _read_split_csv(d) if s == split]
        rng.shuffle(files)
        for p in files[:max_chest]:
            add(_file_gray(d / p), 0.0, folder)
    fixed: list[tuple[NDArray[np.uint8], str]] = [(g, "photo") for g in natural_images()]
    fixed += [(g, "dicom-other") for g in dicom_negatives()]
    fixed += [(g, "synthetic") for g in synthetic_negatives(60, seed=1234)]
    order = np.random.default_rng(99).permutation(len(fixed))
    n = len(fixed)
    bounds = {
        "train": (0, int(0.6 * n)),
        "val": (int(0.6 * n), int(0.8 * n)),
        "test": (int(0.8 * n), n),
    }
    lo, hi = bounds[split]
    for i in order[lo:hi]:
        g, name = fixed[i]
        add(g, 0.0, name)
        if split == "train":
            add(np.ascontiguousarray(g[:, ::-1]), 0.0, name)
    return GateData(np.stack(xs), np.asarray(ys, np.float32), src)
