"""The mammography pipeline stages, each a :class:`shared.transforms.Transform` over a
:class:`MammoState`. Training (``bc_service.train``) runs the same stages up to ``enhance`` to
build its patches, so serving and training see identical pixels.

Stage order (``shared.contracts.mammo.STAGES``): decode → orientation → crop → enhance →
centers → heatmaps → classify.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence, geometry
from bc_service.pipeline.features import (
    GATE_SIZE,
    PATCH_SIZE,
    VIEW_FEATURES,
    WORK_HEIGHT,
    gate_input,
    patches_at,
    view_features,
)
from shared.contracts.mammo import ViewTag
from shared.errors import InvalidImage, NotAMammogram
from shared.imaging import DecodedImage, to_uint8
from shared.transforms import Transform

log = logging.getLogger("irmi.bc.pipeline")

Laterality = Literal["L", "R"]
ViewKind = Literal["CC", "MLO"]

# Runs a batch through a model: (N, ...) float32 -> (N, k) float32.
Predictor = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass
class MammoState:
    """What flows between stages. Working-resolution arrays have the chest wall on the left."""

    image: DecodedImage
    given_tag: ViewTag | None = None
    gray8: NDArray[np.uint8] | None = None  # original size, 8-bit
    dicom_tag: ViewTag | None = None
    gate_score: float | None = None
    mask: geometry.BreastMask | None = None
    chest_wall: geometry.Side = "left"
    side_confidence: float = 0.5
    flipped: bool = False
    detected_laterality: Laterality = "L"
    detected_view: ViewKind = "MLO"
    view_confidence: float = 0.5
    view_evidence: dict[str, Any] = field(default_factory=dict)
    crop_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 in original pixels
    scale: float = 1.0  # working pixels per original pixel
    work: NDArray[np.uint8] | None = None  # cropped, oriented, resized, background zeroed
    work_mask: NDArray[np.bool_] | None = None
    enhanced: NDArray[np.uint8] | None = None
    centre: tuple[int, int] = (0, 0)  # (row, col) in working pixels
    window: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, x0, y1, x1 in working pixels
    window_coverage: float = 0.0
    patch_centres: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    patch_probs: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    heatmaps: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # working resolution
    probabilities: tuple[float, float] = (0.0, 0.0)  # benign, malignant
    maps: evidence.BreastMaps | None = None  # mammo-view/2's evidence (combine pairs breasts)
    p_abnormal: float = 0.0  # from this breast alone (mammo-view/2's unilateral head)
    p_malignancy: float | None = None  # P(malignant | a lesion), mammo-view/2's third head
    density: tuple[float, float, float] | None = None  # P(F), P(G), P(D) (mammo-density)
    notes: list[str] = field(default_factory=list)

    # ---- coordinate maps between the original image and the working image

    def to_work(self, x: float, y: float) -> tuple[float, float]:
        """Original (x, y) → working (x, y)."""
        x0, y0, x1, _ = self.crop_box
        wx = (x - x0) * self.scale
        wy = (y - y0) * self.scale
        if self.flipped:
            wx = (x1 - x0) * self.scale - wx
        return wx, wy

    def to_original(self, wx: float, wy: float) -> tuple[float, float]:
        x0, y0, x1, _ = self.crop_box
        if self.flipped:
            wx = (x1 - x0) * self.scale - wx
        return wx / self.scale + x0, wy / self.scale + y0

    def map_to_original(self, work_map: NDArray[np.float32]) -> NDArray[np.float32]:
        """A working-resolution map placed back into the original frame (zeros outside)."""
        x0, y0, x1, y1 = self.crop_box
        m = work_map[:, ::-1] if self.flipped else work_map
        resized = cv2.resize(m, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = np.zeros((self.image.height, self.image.width), np.float32)
        out[y0:y1, x0:x1] = resized
        return out


def parse_dicom_tag(meta: dict[str, str]) -> ViewTag | None:
    lat = (meta.get("ImageLaterality") or meta.get("Laterality") or "").upper()[:1]
    view = (meta.get("ViewPosition") or "").upper()
    if lat not in ("L", "R"):
        return None
    if view.startswith("CC") or view in ("XCC", "XCCL", "XCCM", "FB"):
        return "L-CC" if lat == "L" else "R-CC"
    if view.startswith("MLO") or view in ("ML", "LM", "LMO", "SIO"):
        return "L-MLO" if lat == "L" else "R-MLO"
    return None


class Decode(Transform):
    """Check the decoded upload (modality, size), read DICOM tags, run the validity gate.

    The bytes were decoded by ``shared.imaging.decode_image`` already (the service does that to
    refuse bad files before queueing); this stage turns them into 8-bit gray, refuses DICOMs of
    another modality than MG, and asks the ``mammo-gate`` model whether this is a mammogram.
    """

    name = "decode"

    def __init__(
        self, gate: Predictor | None, gate_threshold: float = 0.5, gate_size: int = GATE_SIZE
    ) -> None:
        self._gate = gate
        self.gate_threshold = gate_threshold
        self.gate_size = gate_size

    def params(self) -> dict[str, Any]:
        """The preprocessing parameters (the threshold is the gate card's, not a step's)."""
        return {"gate_size": self.gate_size}

    def __call__(self, s: MammoState) -> MammoState:
        meta = s.image.meta
        modality = meta.get("Modality", "").upper()
        if s.image.format == "dicom" and modality and modality != "MG":
            raise NotAMammogram(
                f"This DICOM's Modality is {modality}; only MG (mammography) is accepted.",
                details={"reason": "dicom_modality", "modality": modality},
            )
        s.dicom_tag = parse_dicom_tag(meta)
        gray = to_uint8(s.image)
        if gray.ndim != 2:
            raise InvalidImage("Expected a grayscale image.", details={"shape": list(gray.shape)})
        if float(gray.std()) < 1.0:
            raise NotAMammogram(
                "The image is blank (a single flat value).",
                details={"reason": "blank", "score": 0.0, "threshold": self.gate_threshold},
            )
        s.gray8 = gray
        if self._gate is not None:
            score = float(self._gate(gate_input(gray, self.gate_size)).reshape(-1)[-1])
            s.gate_score = score
            if score < self.gate_threshold:
                raise NotAMammogram(
                    "This does not look like a mammogram.",
                    details={"score": round(score, 4), "threshold": self.gate_threshold},
                )
        return s


class Orientation(Transform):
    """Find the chest-wall side and the view (CC/MLO); decide the flip to the common
    orientation (chest wall left). Laterality is read from the chest-wall side under the
    standard display convention (R breast: chest wall on the right)."""

    name = "orientation"

    def __call__(self, s: MammoState) -> MammoState:
        assert s.gray8 is not None
        s.mask = geometry.breast_mask(s.gray8)
        if s.mask.area_fraction < 0.02:
            raise NotAMammogram(
                "No breast found in the image.",
                details={"reason": "no_breast", "score": s.mask.area_fraction, "threshold": 0.02},
            )
        s.chest_wall, s.side_confidence = geometry.chest_wall_side(s.mask.mask)
        s.flipped = s.chest_wall == "right"
        s.detected_laterality = "R" if s.chest_wall == "right" else "L"
        oriented = s.mask.mask[:, ::-1] if s.flipped else s.mask.mask
        s.detected_view, s.view_confidence, s.view_evidence = geometry.view_kind(oriented)
        return s


class Crop(Transform):
    """Crop to the breast's bounding box (plus a margin) in original coordinates, resize to the
    working height, mirror to the common orientation, and zero everything outside the breast
    mask (film labels, markers, background)."""

    name = "crop"

    def __init__(self, work_height: int = WORK_HEIGHT, margin: float = 0.02) -> None:
        self.work_height = work_height
        self.margin = margin

    def __call__(self, s: MammoState) -> MammoState:
        assert s.gray8 is not None and s.mask is not None
        img_h, img_w = s.gray8.shape
        bx0, by0, bx1, by1 = geometry.bbox(s.mask.mask)
        sc = s.mask.scale
        pad = self.margin * max(img_h, img_w)
        x0 = int(max(0, np.floor(bx0 * sc - pad)))
        y0 = int(max(0, np.floor(by0 * sc - pad)))
        x1 = int(min(img_w, np.ceil(bx1 * sc + pad)))
        y1 = int(min(img_h, np.ceil(by1 * sc + pad)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            raise NotAMammogram(
                "The breast region is too small.",
                details={"reason": "breast_too_small", "score": 0.0, "threshold": 16},
            )
        s.crop_box = (x0, y0, x1, y1)
        aspect = (x1 - x0) / float(y1 - y0)
        if aspect > 4.0:
            # A breast is never four times wider than high; refusing also bounds the memory
            # of the working image (its height is fixed).
            raise NotAMammogram(
                "The breast region has an implausible shape.",
                details={"reason": "breast_shape", "score": round(aspect, 2), "threshold": 4.0},
            )
        s.scale = self.work_height / float(y1 - y0)
        ww = max(PATCH_SIZE // 2, round((x1 - x0) * s.scale))
        crop = s.gray8[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if s.scale < 1 else cv2.INTER_LINEAR
        work = np.asarray(
            cv2.resize(crop, (ww, self.work_height), interpolation=interp), dtype=np.uint8
        )
        # Mask in working coordinates: low-res mask → original → crop → working.
        small = s.mask.mask.astype(np.uint8) * 255
        full_box = cv2.resize(
            small,
            (round(s.mask.mask.shape[1] * sc), round(s.mask.mask.shape[0] * sc)),
            interpolation=cv2.INTER_LINEAR,
        )
        full = np.zeros((img_h, img_w), np.uint8)
        hh, wwid = min(img_h, full_box.shape[0]), min(img_w, full_box.shape[1])
        full[:hh, :wwid] = full_box[:hh, :wwid]
        wmask = cv2.resize(full[y0:y1, x0:x1], (ww, self.work_height)) > 127
        if s.flipped:
            work = work[:, ::-1]
            wmask = wmask[:, ::-1]
        work = np.ascontiguousarray(work)
        work[~wmask] = 0
        s.work = work
        s.work_mask = np.ascontiguousarray(wmask)
        return s


class Enhance(Transform):
    """CLAHE (contrast-limited adaptive histogram equalisation), the report's choice."""

    name = "enhance"

    def __init__(self, clip_limit: float = 2.0, tiles: int = 8) -> None:
        self.clip_limit = clip_limit
        self.tiles = tiles

    def __call__(self, s: MammoState) -> MammoState:
        assert s.work is not None and s.work_mask is not None
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.tiles, self.tiles))
        out = np.asarray(clahe.apply(s.work), dtype=np.uint8)
        out[~s.work_mask] = 0
        s.enhanced = out
        return s


class Centers(Transform):
    """NYU-style optimal centers: where the view classifier's fixed window sits on the breast
    (the window holding the most breast), and the patch grid over the breast only."""

    name = "centers"

    def __init__(self, window: tuple[int, int] = (WORK_HEIGHT, 320), stride: int = 16) -> None:
        self.window = window
        self.stride = stride

    def __call__(self, s: MammoState) -> MammoState:
        assert s.work_mask is not None
        m = s.work_mask
        centre, cov = geometry.optimal_center(m, self.window)
        s.centre = geometry.snap_into(m, centre)
        wh, ww = min(self.window[0], m.shape[0]), min(self.window[1], m.shape[1])
        y0 = int(np.clip(centre[0] - wh // 2, 0, m.shape[0] - wh))
        x0 = int(np.clip(centre[1] - ww // 2, 0, m.shape[1] - ww))
        s.window = (y0, x0, y0 + wh, x0 + ww)
        s.window_coverage = cov
        s.patch_centres = grid_centres(m, self.stride)
        return s


def grid_centres(mask: NDArray[np.bool_], stride: int) -> NDArray[np.int64]:
    """Centres (row, col) of a regular grid (first centre at stride/2) that fall in the mask."""
    h, w = mask.shape
    ys = np.arange(stride // 2, h, stride)
    xs = np.arange(stride // 2, w, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    keep = mask[yy, xx]
    return np.stack([yy[keep], xx[keep]], axis=1).astype(np.int64)


class Heatmaps(Transform):
    """Patch classifier over the grid (batched), then benign and malignant heatmaps at working
    resolution: each patch's probability fills its stride cell, bilinearly smoothed, zero
    outside the breast."""

    name = "heatmaps"

    def __init__(
        self,
        patch_model: Predictor | None,
        stride: int = 16,
        batch_size: int = 64,
        patch_size: int = PATCH_SIZE,
    ) -> None:
        self._model = patch_model
        self.stride = stride
        self.batch_size = batch_size
        self.patch_size = patch_size

    def params(self) -> dict[str, Any]:
        """The preprocessing parameters (the batch size changes only the speed)."""
        return {"stride": self.stride, "patch_size": self.patch_size}

    def __call__(self, s: MammoState) -> MammoState:
        assert s.enhanced is not None and s.work_mask is not None
        centres = s.patch_centres
        if self._model is None:
            # UNTRAINED FALLBACK (no mammo-patch model loaded): local brightness contrast.
            s.notes.append("heatmaps: heuristic fallback, no patch model")
            probs = _heuristic_patch_probs(s.enhanced, centres)
        else:
            outs = []
            for i in range(0, len(centres), self.batch_size):
                batch = patches_at(s.enhanced, centres[i : i + self.batch_size], self.patch_size)
                outs.append(self._model(batch))
            probs = (
                np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 3), np.float32)
            )
        s.patch_probs = probs
        s.heatmaps = {
            "benign": self._paint(s, probs[:, 1] if len(probs) else probs[:, :0]),
            "malignant": self._paint(s, probs[:, 2] if len(probs) else probs[:, :0]),
        }
        return s

    def _paint(self, s: MammoState, values: NDArray[np.float32]) -> NDArray[np.float32]:
        assert s.work_mask is not None
        h, w = s.work_mask.shape
        st = self.stride
        gh, gw = -(-h // st), -(-w // st)
        grid = np.zeros((gh, gw), np.float32)
        if len(values):
            grid[s.patch_centres[:, 0] // st, s.patch_centres[:, 1] // st] = values
        up = cv2.resize(grid, (gw * st, gh * st), interpolation=cv2.INTER_LINEAR)[:h, :w]
        painted: NDArray[np.float32] = np.where(s.work_mask, up, 0.0).astype(np.float32)
        return painted


def _heuristic_patch_probs(img: NDArray[np.uint8], centres: NDArray[np.int64]) -> NDArray[Any]:
    if len(centres) == 0:
        return np.zeros((0, 3), np.float32)
    p = patches_at(img, centres)
    c = p[:, 24:40, 24:40, 0].mean(axis=(1, 2)) - p[:, :, :, 0].mean(axis=(1, 2))
    z = 1.0 / (1.0 + np.exp(-(c * 20.0 - 3.0)))
    probs = np.stack([1 - z, z * 0.5, z * 0.5], axis=1)
    return probs.astype(np.float32)


class Classify(Transform):
    """Per view: the breast's evidence maps (:mod:`bc_service.pipeline.evidence`), then
    ``mammo-view`` read from this breast alone (the exam's ``combine`` reads it again with
    the other breast of the same view) and ``mammo-density``."""

    name = "classify"

    def __init__(
        self, view_model: Predictor | None, density_model: Predictor | None = None
    ) -> None:
        self._model = view_model
        self._density = density_model
        self.features = list(evidence.VIEW_FEATURES_V2)  # the view model's inputs, in order
        self.density_features = list(evidence.DENSITY_FEATURES)
        self.evidence_scale = evidence.HALF

    def __call__(self, s: MammoState) -> MammoState:
        assert s.work is not None and s.work_mask is not None and s.enhanced is not None
        s.maps = evidence.breast_maps(s.work, s.work_mask, s.enhanced)
        if self._model is None:
            # UNTRAINED FALLBACK (no mammo-view model loaded): the patch model's lesion map.
            s.notes.append("classify: heuristic fallback, no view model")
            s.p_abnormal = float(classifier_features(s)[VIEW_FEATURES.index("lesion_top3_mean")])
        else:
            out = self._model(evidence.view_inputs(s.maps, None)[None, :]).reshape(-1)
            s.p_abnormal, s.p_malignancy = float(out[1]), float(out[2])
        if self._density is not None:
            d = self._density(evidence.density_inputs(s.maps)[None, :]).reshape(-1)
            s.density = (float(d[0]), float(d[1]), float(d[2]))
        return s


def classifier_features(s: MammoState) -> NDArray[np.float32]:
    """The view model's input: statistics of the patch probabilities inside the window."""
    y0, x0, y1, x1 = s.window
    c = s.patch_centres
    inside = (c[:, 0] >= y0) & (c[:, 0] < y1) & (c[:, 1] >= x0) & (c[:, 1] < x1)
    probs = s.patch_probs[inside] if inside.any() else s.patch_probs
    return view_features(probs)


def preprocess_stages(work_height: int = WORK_HEIGHT) -> list[Transform]:
    """decode (no gate) → orientation → crop → enhance: what training uses to build patches."""
    return [Decode(None), Orientation(), Crop(work_height), Enhance()]
