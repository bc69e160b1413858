"""Benchmark inputs at the sizes users send, and at the sizes of the data we hold.

Chest (``chest_inputs``): the data's own files as they are (NIH ChestX-ray14 512 px JPEG,
Kermany pediatric 384 px JPEG), and one NIH film enlarged to what clinics send: a 1024 px JPEG,
a 2500x3000 JPEG, a 2500x3000 16-bit PNG holding 12-bit values and a 2500x3000 16-bit DICOM
(MONOCHROME2 with a VOI window). Mammography (``mammo_exam``): four mini-MIAS views (two left,
two right) as they are (1024 px PNG) and enlarged to 3000x4000 JPEG.

An enlarged film is smooth, and a smooth image decodes unrealistically fast (JPEG and PNG
compress it to nothing): :func:`film_noise` adds quantum mottle (per-pixel Gaussian noise) and
film grain (the same, blurred) at a detector's level, so the bytes cost what a real film's do.
Without ``IRMI_DATA_DIR`` the films are synthetic (said in the output).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.imaging import encode_dicom
from shared.settings import default_data_dir


@dataclass(frozen=True)
class Upload:
    name: str  # e.g. "jpeg-2500x3000"
    data: bytes
    width: int
    height: int
    source: str  # where the pixels come from

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def film_noise(pixels: NDArray[np.float32], seed: int, depth: float = 255.0) -> NDArray[np.float32]:
    """Quantum mottle (sigma 1.2% of the range) plus film grain (1%, blurred 1.5 px)."""
    rng = np.random.default_rng(seed)
    mottle = rng.normal(0.0, 0.012 * depth, pixels.shape).astype(np.float32)
    grain = cv2.GaussianBlur(
        rng.normal(0.0, 0.02 * depth, pixels.shape).astype(np.float32), (0, 0), 1.5
    )
    return pixels + mottle + grain


def enlarge(
    gray: NDArray[np.uint8], size: tuple[int, int], seed: int, depth: float = 255.0
) -> NDArray[np.float32]:
    """``gray`` resampled to ``size`` = (w, h) (cubic), scaled to ``depth``, with film noise."""
    up = cv2.resize(gray.astype(np.float32) * (depth / 255.0), size, interpolation=cv2.INTER_CUBIC)
    return np.clip(film_noise(up, seed, depth), 0.0, depth)


def jpeg(pixels: NDArray[np.uint8], quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _first(folder: Path, split: str = "test") -> Path | None:
    """The first file of ``split`` in a data folder (its splits.csv), or None."""
    splits = folder / "splits.csv"
    if not splits.exists():
        return None
    with splits.open() as fh:
        for row in csv.DictReader(fh):
            if row["split"] == split and (folder / row["path"]).exists():
                return folder / row["path"]
    return None


def _synthetic_chest(seed: int, side: int = 512) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    img = np.full((side, side), 20.0, dtype=np.float32)
    c = side // 2
    cv2.ellipse(img, (c, c), (int(side * 0.45), int(side * 0.48)), 0, 0, 360, 190, -1)
    for cx in (int(side * 0.32), int(side * 0.68)):
        cv2.ellipse(
            img, (cx, int(side * 0.45)), (int(side * 0.13), int(side * 0.28)), 0, 0, 360, 70, -1
        )
    img = cv2.GaussianBlur(img, (0, 0), 3) + rng.normal(0, 6, (side, side))
    return np.clip(img, 0, 255).astype(np.uint8)


CHEST_USER_SIZES = ("jpeg-1024", "jpeg-2500x3000", "png16-2500x3000", "dicom-2500x3000")
QUICK_CHEST = ("data-nih-512", "jpeg-2500x3000")


def chest_inputs(names: tuple[str, ...] | None = None) -> list[Upload]:
    """Every chest input (or those named), data-size files first."""
    data = default_data_dir()
    out: list[Upload] = []
    nih = _first(data / "nih-cxr14")
    kermany = _first(data / "kermany-pediatric")
    if nih is not None:
        raw = nih.read_bytes()
        gray = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
        out.append(
            Upload("data-nih-512", raw, gray.shape[1], gray.shape[0], f"nih-cxr14 {nih.name}")
        )
        source = f"nih-cxr14 {nih.name}, enlarged with film noise"
    else:
        gray = _synthetic_chest(0)
        out.append(Upload("synthetic-512", jpeg(gray), 512, 512, "synthetic"))
        source = "synthetic film, enlarged with film noise"
    if kermany is not None:
        raw = kermany.read_bytes()
        k = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
        out.append(
            Upload("data-kermany-384", raw, k.shape[1], k.shape[0], f"kermany {kermany.name}")
        )
    big = (2500, 3000)
    out.append(
        Upload(
            "jpeg-1024", jpeg(enlarge(gray, (1024, 1024), 1).astype(np.uint8)), 1024, 1024, source
        )
    )
    out.append(Upload("jpeg-2500x3000", jpeg(enlarge(gray, big, 2).astype(np.uint8)), *big, source))
    twelve = enlarge(gray, big, 3, depth=4095.0).astype(np.uint16)
    ok, png16 = cv2.imencode(".png", twelve)
    assert ok
    out.append(Upload("png16-2500x3000", bytes(png16.tobytes()), *big, source + " (12-bit in 16)"))
    dcm = encode_dicom(
        twelve,
        modality="DX",
        bits_stored=12,
        extra={"WindowCenter": 2048, "WindowWidth": 4096, "BodyPartExamined": "CHEST"},
    )
    out.append(Upload("dicom-2500x3000", dcm, *big, source + " (12-bit DX, VOI window)"))
    if names is not None:
        out = [
            u
            for u in out
            if u.name in names or (u.name.startswith("synthetic") and "data-nih-512" in names)
        ]
    return out


def mammo_exam(size: tuple[int, int] | None) -> list[tuple[str, Upload]]:
    """Four tagged views: mini-MIAS test films (two left, two right) as they are when
    ``size`` is None, else enlarged to ``size`` = (w, h) with film noise, as JPEG."""
    root = default_data_dir() / "mini-mias"
    views: list[tuple[str, NDArray[np.uint8], bytes, str]] = []
    if (root / "labels.csv").exists():
        with (root / "labels.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        for lat in ("L", "R"):
            for view, row in zip(
                ("CC", "MLO"), [r for r in rows if r["laterality"] == lat][:2], strict=False
            ):
                raw = (root / row["path"]).read_bytes()
                gray = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
                views.append((f"{lat}-{view}", gray, raw, f"mini-mias {row['path']}"))
    else:
        from tests.imagegen import mammo_phantom

        for i, tag in enumerate(("L-CC", "L-MLO", "R-CC", "R-MLO")):
            img = mammo_phantom(1024, 832, chest_wall="left" if tag[0] == "L" else "right", seed=i)
            views.append((tag, img, cv2.imencode(".png", img)[1].tobytes(), "synthetic phantom"))
    out: list[tuple[str, Upload]] = []
    for i, (tag, gray, raw, source) in enumerate(views):
        if size is None:
            out.append(
                (tag, Upload(f"mammo-{gray.shape[1]}", raw, gray.shape[1], gray.shape[0], source))
            )
        else:
            big = jpeg(enlarge(gray, size, 10 + i).astype(np.uint8))
            out.append(
                (tag, Upload(f"mammo-jpeg-{size[0]}x{size[1]}", big, *size, source + " enlarged"))
            )
    return out
