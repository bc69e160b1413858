"""Negatives for the validity gate ("not a chest X-ray"), TensorFlow-free.

Sources: natural photographs bundled with scikit-image and scikit-learn, the CT/MR/other
DICOM test files bundled with pydicom, synthetic edge cases (blank, noise, text,
gradients, checkerboards) and synthetic scanned documents (reports, forms, letters). The
mammograms of mini-mias and rotated chest X-rays are added by the cache builder from the data
folder. Every item gets a deterministic split.

There are NO radiographs of other body parts (hand, knee, spine, abdomen) and no lateral chest
films here: the gate has never seen them. DICOM headers that say so are refused before any
model runs (tb_service.validity); for pixels alone, the reliability flag carries them.

Rotated chest films: the orientation model (tb_service.orientation) runs before the gate and
turns a confidently rotated film upright, so the gate sees upright films. The rotated
negatives stay: a film whose orientation is uncertain is not turned, and a gate that refuses
sideways films then refuses it (fail-safe) instead of scoring it on its side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.imaging import DecodedImage, decode_image
from tb_service.train.data import hash_split

log = logging.getLogger("irmi.train")

# skimage.data images shipped inside the wheel (the others would need a download).
SKIMAGE_FILES = [
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "chessboard_GRAY.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "microaneurysms.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "phantom.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
]


@dataclass
class Negative:
    name: str
    source: str
    split: str
    image: DecodedImage


def _decoded(px: NDArray[np.uint8]) -> DecodedImage:
    return DecodedImage(pixels=px, format="png", bits_stored=8, value_range=(0.0, 255.0))


def _crops(px: NDArray[np.uint8], n: int, rng: np.random.Generator) -> Iterator[NDArray[np.uint8]]:
    """The whole image plus n-1 random crops (40-90 % of each side)."""
    yield px
    h, w = px.shape[:2]
    for _ in range(n - 1):
        crop_h, crop_w = int(h * rng.uniform(0.4, 0.9)), int(w * rng.uniform(0.4, 0.9))
        y, x = int(rng.integers(0, h - crop_h + 1)), int(rng.integers(0, w - crop_w + 1))
        yield np.ascontiguousarray(px[y : y + crop_h, x : x + crop_w])


def natural_images(crops_per_image: int = 6, seed: int = 0) -> Iterator[Negative]:
    rng = np.random.default_rng(seed)
    sources: list[tuple[str, NDArray[np.uint8]]] = []
    try:
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        for fname in SKIMAGE_FILES:
            path = folder / fname
            if path.exists():
                try:
                    img = decode_image(path.read_bytes())
                    sources.append((f"skimage/{fname}", np.asarray(img.pixels, np.uint8)))
                except Exception as exc:
                    log.warning("skip %s: %s", fname, exc)
    except ImportError:
        log.warning("scikit-image missing: no skimage negatives")
    try:
        from sklearn.datasets import load_sample_images

        for i, img in enumerate(load_sample_images().images):
            sources.append((f"sklearn/sample_{i}", np.asarray(img, np.uint8)))
    except ImportError:
        log.warning("scikit-learn missing: no sklearn negatives")
    for name, px in sources:
        split = hash_split(name)
        if px.ndim == 3 and px.shape[2] == 4:
            px = np.ascontiguousarray(px[:, :, :3])
        for j, crop in enumerate(_crops(px, crops_per_image, rng)):
            if min(crop.shape[:2]) >= 16:
                yield Negative(f"{name}#{j}", "natural", split, _decoded(crop))


def dicom_images() -> Iterator[Negative]:
    """pydicom's bundled test files that decode to an image (CT, MR, ultrasound, RGB...)."""
    try:
        from pydicom.data import get_testdata_files
    except ImportError:
        log.warning("pydicom missing: no DICOM negatives")
        return
    for path in sorted(get_testdata_files("*.dcm")):
        try:
            img = decode_image(Path(path).read_bytes())
        except Exception as exc:  # most test files are not images: skip them
            log.debug("skip %s: %s", path, exc)
            continue
        name = f"pydicom/{Path(path).name}"
        yield Negative(name, "dicom", hash_split(name), img)


def synthetic_images(n_each: int = 12, seed: int = 0) -> Iterator[Negative]:
    """Blank, noise, text, gradient and checkerboard images of assorted sizes."""
    rng = np.random.default_rng(seed)
    for i in range(n_each):
        h, w = int(rng.integers(64, 600)), int(rng.integers(64, 600))
        split = ["train", "train", "train", "train", "val", "test"][i % 6]
        level = int(rng.integers(0, 256))
        yield Negative(f"blank{i}", "synthetic", split, _decoded(np.full((h, w), level, np.uint8)))
        noise = rng.normal(level, rng.uniform(5, 80), (h, w))
        yield Negative(
            f"noise{i}", "synthetic", split, _decoded(np.clip(noise, 0, 255).astype(np.uint8))
        )
        uni = rng.integers(0, 256, (h, w)).astype(np.uint8)
        yield Negative(f"uniform{i}", "synthetic", split, _decoded(uni))
        page = np.full((h, w), int(rng.integers(180, 256)), np.uint8)
        for line in range(max(1, h // 30)):
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, 12))
            cv2.putText(page, text, (5, 25 + 30 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
        yield Negative(f"text{i}", "synthetic", split, _decoded(page))
        grad = np.tile(np.linspace(0, 255, w), (h, 1))
        if i % 2:
            grad = grad.T.copy() if h == w else np.tile(np.linspace(0, 255, h)[:, None], (1, w))
        yield Negative(f"gradient{i}", "synthetic", split, _decoded(grad.astype(np.uint8)))
        cell = int(rng.integers(4, 64))
        yy, xx = np.mgrid[0:h, 0:w]
        board = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
        yield Negative(f"checker{i}", "synthetic", split, _decoded(board))


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)


def _words(rng: np.random.Generator, n: int) -> str:
    lengths = rng.integers(2, 10, n)
    return " ".join("".join(chr(int(c)) for c in rng.integers(97, 123, int(k))) for k in lengths)


def document(seed: int, width: int = 850, height: int = 1100) -> NDArray[np.uint8]:
    """A synthetic scanned document (report, form or letter): a light page with a heading,
    paragraphs in varied fonts, a ruled table or form fields, a logo block and a signature
    scribble, then scanner noise, blur and a slight skew. Gray, uint8."""
    rng = np.random.default_rng(seed)
    paper = np.full((height, width), int(rng.integers(200, 256)), np.uint8)
    page = paper  # OpenCV draws text on 8-bit images only
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    ink = int(rng.integers(0, 70))
    margin = int(width * rng.uniform(0.06, 0.12))
    y = int(height * rng.uniform(0.05, 0.1))
    if rng.random() < 0.6:  # logo block
        cv2.rectangle(page, (margin, y), (margin + 90, y + 60), ink, -1)
    scale = rng.uniform(1.0, 1.6)
    cv2.putText(page, _words(rng, 3).upper(), (margin + 110, y + 40), font, scale, ink, 2)
    y += 110
    while y < height - 120:
        kind = rng.random()
        if kind < 0.55:  # a paragraph
            for _ in range(int(rng.integers(2, 7))):
                cv2.putText(page, _words(rng, 7), (margin, y), font, 0.7, ink, 1, cv2.LINE_AA)
                y += int(rng.integers(22, 34))
            y += 20
        elif kind < 0.8:  # a ruled table
            rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 5))
            cw, rh = (width - 2 * margin) // cols, 30
            for r in range(rows + 1):
                cv2.line(page, (margin, y + r * rh), (width - margin, y + r * rh), ink, 1)
            for c in range(cols + 1):
                cv2.line(page, (margin + c * cw, y), (margin + c * cw, y + rows * rh), ink, 1)
            for r in range(rows):
                for c in range(cols):
                    text = _words(rng, 1)
                    cv2.putText(page, text, (margin + c * cw + 6, y + r * rh + 21), font, 0.5, ink)
            y += rows * rh + 40
        else:  # form fields: label and an underline
            for _ in range(int(rng.integers(2, 5))):
                cv2.putText(page, _words(rng, 2) + ":", (margin, y), font, 0.6, ink, 1)
                cv2.line(page, (margin + 220, y + 4), (width - margin, y + 4), ink, 1)
                y += 38
            y += 10
    pts = np.cumsum(rng.normal(0, 6, (30, 2)), axis=0) + np.array([width * 0.65, height - 80])
    cv2.polylines(page, [pts.astype(np.int32)], False, ink, 2)  # signature
    angle = rng.uniform(-3, 3)
    rot = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    skewed = cv2.warpAffine(page, rot, (width, height), borderValue=int(paper[0, 0]))
    scan = cv2.GaussianBlur(skewed.astype(np.float32), (0, 0), rng.uniform(0.3, 1.2))
    scan = scan + np.asarray(rng.normal(0, rng.uniform(2, 10), scan.shape), np.float32)
    return np.clip(scan, 0, 255).astype(np.uint8)


def document_images(n: int = 48, seed: int = 100) -> Iterator[Negative]:
    """Synthetic scanned documents (:func:`document`) of assorted page sizes."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w = int(rng.integers(500, 1000))
        h = int(w * rng.uniform(1.2, 1.5)) if rng.random() < 0.8 else int(w * rng.uniform(0.6, 0.8))
        split = ["train", "train", "train", "train", "val", "test"][i % 6]
        yield Negative(f"document{i}", "document", split, _decoded(document(seed + i, w, h)))


def rotate90(img: DecodedImage, k: int = 1) -> DecodedImage:
    """The image rotated by k * 90 degrees (a chest X-ray on its side is not a valid input)."""
    px = np.ascontiguousarray(np.rot90(img.pixels, k))
    return DecodedImage(px, img.format, img.bits_stored, img.value_range, dict(img.meta))
