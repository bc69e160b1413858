"""Chest X-ray preprocessing as composed transforms, shared by training and serving.

``chest_pipeline()`` (abnormality model) runs::

    to_gray_uint8 -> detail_side -> working_side -> median_denoise -> lung_seg_crop -> clahe
    -> resize_square -> normalise

where ``lung_seg_crop`` (:class:`tb_service.lungseg.LungSegCrop`) crops to both lungs of the
segmentation model's mask plus a margin. ``heuristic_chest_pipeline()`` keeps the earlier
heuristic ``lung_crop`` (:func:`find_lung_box`) for models trained behind it, and
``chest_pipeline_for(card)`` picks the one a model's card records.

and ``gate_pipeline()`` (the "is this a chest X-ray" gate) a simpler chain without the lung
crop and CLAHE. Both take a :class:`shared.imaging.DecodedImage` (raw bytes are decoded too)
and return a :class:`ChestInput` whose ``image`` is float32 (S, S, 1).

Shortcut hygiene: the final resize squashes the (cropped) image onto a square without
letterbox padding, so neither the aspect ratio nor the original resolution reaches the
network; ``normalise`` standardises each image (zero mean, unit variance) so global
brightness and contrast of the source device do not either.

``crop_box`` is always in ORIGINAL pixel coordinates ``(x0, y0, x1, y1)`` (exclusive end), so
a heatmap over the network input maps back onto the uploaded image with
:func:`heatmap_to_original`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.contracts.screening import ReliabilityReason
from shared.imaging import DecodedImage, decode_image, to_uint8
from shared.model import ModelCard, ModelCardError, OnnxModel
from shared.transforms import Compose, Transform

INPUT_SIZE = 128
"""Side of the abnormality model's square input."""

GATE_INPUT_SIZE = 64
"""Side of the validity gate's square input (the gate needs far less detail)."""

WORKING_SIDE = 384
"""Long side of the abnormality pipeline's working resolution: no larger than the smallest
training source (Kermany's copies are 384 px), so a full-resolution original and a resized
copy of the same film take the same path."""

DETAIL_SIDE = 192
"""Long side the abnormality pipeline resamples every film to before the working side: the
finest detail any later step sees. Half the smallest training source, so a film sent at half
its size carries the same detail as the original and gets the same score (issue 13, item 3);
the network input is 128 px of a lung crop that spans about 150 px at this side, so the model
loses little it could use."""

Box = tuple[int, int, int, int]


@dataclass
class ChestInput:
    """A preprocessed image ready for the network."""

    image: NDArray[np.float32]  # float32 (S, S, 1)
    crop_box: Box  # x0, y0, x1, y1 in ORIGINAL pixels (x1, y1 exclusive)
    original_size: tuple[int, int]  # (w, h) of the decoded image
    # Why the score may not hold for this image (e.g. an implausible lung mask): each one
    # raises the result's reliability flag (shared.contracts.screening.Reliability).
    reasons: list[ReliabilityReason] = field(default_factory=list)


@dataclass
class Work:
    """Intermediate state between steps: pixels in a working resolution.

    ``scale`` maps original pixels to working pixels (working = original * scale);
    ``crop_box`` is kept in original pixels throughout.
    """

    pixels: NDArray[Any]
    crop_box: Box
    original_size: tuple[int, int]
    scale: float = 1.0
    reasons: list[ReliabilityReason] = field(default_factory=list)  # -> ChestInput.reasons


def _as_work(data: Any) -> Work:
    if isinstance(data, Work):
        return data
    raise TypeError(f"expected Work, got {type(data).__name__}")


class ToGrayUint8(Transform):
    """DecodedImage (or raw bytes) -> 8-bit grayscale, explicit range conversion."""

    name = "to_gray_uint8"

    def __call__(self, data: Any) -> Work:
        if isinstance(data, bytes | bytearray | memoryview):
            data = decode_image(bytes(data))
        if not isinstance(data, DecodedImage):
            raise TypeError(f"expected DecodedImage, got {type(data).__name__}")
        px = to_uint8(data, gray=True)
        h, w = px.shape[:2]
        return Work(pixels=px, crop_box=(0, 0, w, h), original_size=(w, h), scale=1.0)


class Downscale(Transform):
    """Shrink so the long side is at most ``max_side`` (bounds the cost of later steps)."""

    def __init__(self, max_side: int = 512) -> None:
        self.max_side = max_side

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        h, w = work.pixels.shape[:2]
        long_side = max(h, w)
        if long_side <= self.max_side:
            return work
        f = self.max_side / long_side
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        px = cv2.resize(work.pixels, (nw, nh), interpolation=cv2.INTER_AREA)
        return replace(work, pixels=px, scale=work.scale * f)


class WorkingSide(Transform):
    """Resample so the long side is exactly ``side``: shrink larger films (area), enlarge
    smaller ones (linear, as the training augmentation enlarges its shrunk copies), so a film
    sent at half or twice its size reaches every later step at the same scale. Every training
    film is at least ``side`` long (nih-cxr14 512 px, kermany-pediatric 384 px), so for them
    this is the plain downscale they were trained behind."""

    def __init__(self, side: int = 384) -> None:
        self.side = side

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        h, w = work.pixels.shape[:2]
        long_side = max(h, w)
        if long_side == self.side:
            return work
        f = self.side / long_side
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        kernel = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        px = cv2.resize(work.pixels, (nw, nh), interpolation=kernel)
        return replace(work, pixels=px, scale=work.scale * f)


class DetailSide(WorkingSide):
    """Resample so the long side is exactly ``side`` (area down, linear up), before
    :class:`WorkingSide` brings the film back up to the working resolution. Detail finer than
    ``side`` is gone whatever the film's size, so the original and a half-size copy of the
    same film reach every later step nearly alike, and so do a JPEG's block edges and a
    detector's noise texture. Kept as a step of its own so the later steps (denoise, lung
    crop, CLAHE tiles) keep working at the scale the earlier models were trained at."""

    def __init__(self, side: int = DETAIL_SIDE) -> None:
        super().__init__(side)


class MedianDenoise(Transform):
    """Median filter (the report's denoising step); removes salt-and-pepper noise."""

    def __init__(self, ksize: int = 3) -> None:
        if ksize < 1 or ksize % 2 == 0:
            raise ValueError("ksize must be a positive odd number")
        self.ksize = ksize

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        if self.ksize == 1:
            return work
        px = cv2.medianBlur(np.ascontiguousarray(work.pixels, dtype=np.uint8), self.ksize)
        return replace(work, pixels=px)


def find_lung_box(
    gray: NDArray[np.uint8],
    *,
    analysis_side: int = 256,
    min_component_frac: float = 0.005,
    dark_percentile: float = 40.0,
    margin: float = 0.06,
    min_box_frac: float = 0.2,
    max_box_frac: float = 0.97,
) -> Box | None:
    """Bounding box (x0, y0, x1, y1) of the two lung fields in ``gray``'s pixels, or None.

    Lungs are the large dark regions enclosed by the brighter body: threshold the blurred
    image at Otsu's level, drop dark components that touch the border (air outside the body,
    black film margins), keep the (at most two) largest remaining components and take their
    joint bounding box plus a margin. Anything implausible returns None (caller keeps the
    whole image). Cheaper and steadier than the report's Canny edges on noisy films.
    """
    h, w = gray.shape[:2]
    if h < 16 or w < 16:
        return None
    f = analysis_side / max(h, w)
    small = cv2.resize(
        gray, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA
    )
    sh, sw = small.shape[:2]
    if float(small.std()) < 8.0:
        return None  # flat image: nothing to localise
    blur = cv2.GaussianBlur(small, (5, 5), 0)
    # Threshold at a low percentile of the central field (where lungs live) rather than a
    # global Otsu level, which the outside air and film margins pull down.
    centre = blur[int(0.1 * sh) : int(0.8 * sh), int(0.15 * sw) : int(0.85 * sw)]
    level = float(np.percentile(centre, dark_percentile))
    dark = np.where(blur <= level, 255, 0).astype(np.uint8)
    # Erode so thin bridges between a lung and the outside air (axilla, neck) break.
    k = max(3, (analysis_side // 40) | 1)
    eroded = cv2.erode(dark, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(eroded, connectivity=8)
    candidates: list[tuple[int, int]] = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        touches = x <= 0 or y <= 0 or x + bw >= sw or y + bh >= sh
        cx, cy = x + bw / 2.0, y + bh / 2.0
        central = 0.1 * sw <= cx <= 0.9 * sw and cy <= 0.85 * sh
        if touches or not central or area < min_component_frac * sh * sw:
            continue
        candidates.append((area, i))
    if not candidates:
        return None
    largest = max(a for a, _ in candidates)
    # Components far smaller than the largest are noise, not lung.
    keep = [i for a, i in candidates if a >= 0.15 * largest]
    xs0 = min(int(stats[i, 0]) for i in keep)
    ys0 = min(int(stats[i, 1]) for i in keep)
    xs1 = max(int(stats[i, 0] + stats[i, 2]) for i in keep)
    ys1 = max(int(stats[i, 1] + stats[i, 3]) for i in keep)
    # Films are roughly centred: mirror about the vertical midline, so one detected lung
    # (the other opaque, or merged with the outside air) still yields both lung fields.
    xs0, xs1 = min(xs0, sw - xs1), max(xs1, sw - xs0)
    mx, my = margin * (xs1 - xs0) + k / 2, margin * (ys1 - ys0) + k / 2
    x0 = max(0.0, xs0 - mx) / f
    y0 = max(0.0, ys0 - my) / f
    x1 = min(float(sw), xs1 + mx) / f
    y1 = min(float(sh), ys1 + my) / f
    box = (int(x0), int(y0), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
    bw_, bh_ = box[2] - box[0], box[3] - box[1]
    frac = (bw_ * bh_) / float(w * h)
    if not (min_box_frac <= frac <= max_box_frac):
        return None
    if bw_ < 0.4 * w or bh_ < 0.4 * h or not (0.4 <= bw_ / max(bh_, 1) <= 2.5):
        return None
    return box


class LungCrop(Transform):
    """Crop to the lung fields (see :func:`find_lung_box`); whole image when unsure."""

    def __init__(self, margin: float = 0.06, min_box_frac: float = 0.2) -> None:
        self.margin = margin
        self.min_box_frac = min_box_frac

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        box = find_lung_box(work.pixels, margin=self.margin, min_box_frac=self.min_box_frac)
        return work if box is None else crop_work(work, box)


def crop_work(work: Work, box: Box) -> Work:
    """``work`` cropped to ``box`` (working pixels); the crop box kept in original pixels."""
    x0, y0, x1, y1 = box
    px = work.pixels[y0:y1, x0:x1]
    # Working box -> original pixels (offset by any earlier crop).
    ox0, oy0, ox1, oy1 = work.crop_box
    s = work.scale
    orig = (
        ox0 + int(np.floor(x0 / s)),
        oy0 + int(np.floor(y0 / s)),
        min(ox1, ox0 + int(np.ceil(x1 / s))),
        min(oy1, oy0 + int(np.ceil(y1 / s))),
    )
    return replace(work, pixels=np.ascontiguousarray(px), crop_box=orig)


class Clahe(Transform):
    """Contrast-limited adaptive histogram equalisation."""

    def __init__(self, clip_limit: float = 2.0, tile_grid: int = 8) -> None:
        self.clip_limit = clip_limit
        self.tile_grid = tile_grid

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.tile_grid,) * 2)
        px = clahe.apply(np.ascontiguousarray(work.pixels, dtype=np.uint8))
        return replace(work, pixels=px)


class ResizeSquare(Transform):
    """Squash onto size x size (no letterbox: the aspect ratio is not encoded)."""

    def __init__(self, size: int = INPUT_SIZE) -> None:
        self.size = size

    def __call__(self, data: Any) -> Work:
        work = _as_work(data)
        h, w = work.pixels.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) >= self.size else cv2.INTER_LINEAR
        px = cv2.resize(work.pixels, (self.size, self.size), interpolation=interp)
        return replace(work, pixels=px)


class Normalise(Transform):
    """uint8 -> float32 (S, S, 1): ``zscore`` per image, or ``unit`` (x / 255)."""

    def __init__(self, mode: Literal["zscore", "unit"] = "zscore", eps: float = 1e-3) -> None:
        if mode not in ("zscore", "unit"):
            raise ValueError("mode must be 'zscore' or 'unit'")
        self.mode = mode
        self.eps = eps

    def __call__(self, data: Any) -> ChestInput:
        work = _as_work(data)
        x = work.pixels.astype(np.float32) / 255.0
        if self.mode == "zscore":
            x = (x - float(x.mean())) / max(float(x.std()), self.eps)
        return ChestInput(
            image=np.ascontiguousarray(x[:, :, None], dtype=np.float32),
            crop_box=work.crop_box,
            original_size=work.original_size,
            reasons=list(work.reasons),
        )


def chest_pipeline(
    size: int = INPUT_SIZE, seg: OnnxModel | None = None, detail_side: int | None = DETAIL_SIDE
) -> Compose[ChestInput]:
    """Preprocessing of the abnormality model (input "image" [N, size, size, 1]), cropped to
    the lung fields by the segmentation model ``seg`` (default: the committed ``lung-seg``).
    ``detail_side`` None rebuilds chest-abnormality/2's, trained before :class:`DetailSide`."""
    from tb_service.lungseg import LungSegCrop

    resample: list[Transform] = [WorkingSide(WORKING_SIDE)]
    if detail_side is not None:
        resample.insert(0, DetailSide(detail_side))
    return _chest(size, LungSegCrop(seg), resample)


def heuristic_chest_pipeline(
    size: int = INPUT_SIZE, max_side: int = WORKING_SIDE
) -> Compose[ChestInput]:
    """The chest pipeline with the heuristic :class:`LungCrop` (served for models whose card
    records ``lung_crop``); ``max_side`` 512 rebuilds chest-abnormality/1's, trained before the
    working side became :data:`WORKING_SIDE`."""
    return _chest(size, LungCrop(), [Downscale(max_side=max_side)])


def recorded_working_side(card: ModelCard) -> int:
    """The ``downscale`` step's ``max_side`` a card records (:data:`WORKING_SIDE` if none)."""
    side = _recorded_param(card, "downscale", "max_side")
    return WORKING_SIDE if side is None else side


def recorded_detail_side(card: ModelCard) -> int | None:
    """The ``detail_side`` step's ``side`` a card records (None: trained without one)."""
    return _recorded_param(card, "detail_side", "side")


def _recorded_param(card: ModelCard, stage: str, param: str) -> int | None:
    for step in card.preprocessing.steps:
        value = step.params.get(param) if step.stage == stage else None
        if isinstance(value, int):
            return value
    return None


def chest_pipeline_for(
    card: ModelCard, size: int = INPUT_SIZE, seg: OnnxModel | None = None
) -> Compose[ChestInput]:
    """The chest pipeline a screen was trained behind, chosen by the crop step its card
    records (``lung_seg_crop`` or the heuristic ``lung_crop``); every step and parameter is
    then checked against the card as usual (:func:`shared.model.check_preprocessing`)."""
    stages = {step.stage for step in card.preprocessing.steps}
    if "lung_seg_crop" in stages:
        if seg is None:
            raise ModelCardError(
                f"{card.name} v{card.version} is trained behind lung_seg_crop: the lung-seg "
                "model must be loaded"
            )
        return chest_pipeline(size, seg, recorded_detail_side(card))
    return heuristic_chest_pipeline(size, recorded_working_side(card))


def _chest(size: int, crop: Transform, resample: list[Transform]) -> Compose[ChestInput]:
    return Compose(
        [
            ToGrayUint8(),
            *resample,
            MedianDenoise(ksize=3),
            crop,
            Clahe(clip_limit=2.0, tile_grid=8),
            ResizeSquare(size),
            Normalise("zscore"),
        ]
    )


def gate_pipeline(size: int = GATE_INPUT_SIZE) -> Compose[ChestInput]:
    """Preprocessing of the validity gate: no lung crop, no CLAHE, values in [0, 1]."""
    return Compose(
        [
            ToGrayUint8(),
            Downscale(max_side=512),
            MedianDenoise(ksize=3),
            ResizeSquare(size),
            Normalise("unit"),
        ]
    )


def heatmap_to_original(heatmap: NDArray[Any], inp: ChestInput) -> NDArray[np.float32]:
    """Resize a network-space heatmap (h, w) onto the original image (H, W), zero outside
    the crop box: overlay-ready on the uploaded image."""
    w, h = inp.original_size
    x0, y0, x1, y1 = inp.crop_box
    out = np.zeros((h, w), dtype=np.float32)
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    hm = cv2.resize(np.asarray(heatmap, dtype=np.float32), (bw, bh), interpolation=cv2.INTER_LINEAR)
    out[y0 : y0 + bh, x0 : x0 + bw] = hm[: h - y0, : w - x0]
    return out


def peak_to_original(heatmap: NDArray[Any], inp: ChestInput) -> tuple[float, float]:
    """(x, y) of the heatmap's maximum in original pixels (cell centre)."""
    hh, hw = heatmap.shape[:2]
    iy, ix = np.unravel_index(int(np.argmax(heatmap)), (hh, hw))
    x0, y0, x1, y1 = inp.crop_box
    return (x0 + (ix + 0.5) / hw * (x1 - x0), y0 + (iy + 0.5) / hh * (y1 - y0))
