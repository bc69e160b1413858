"""Crop a chest film to its lung fields with the lung segmentation model (``lung-seg``).

:class:`LungSegCrop` is the chest pipeline's crop step: it runs the committed U-Net (one ONNX
Runtime session per process) on the working image, checks the mask
(:func:`tb_service.lungmask.check_lung_mask`) and crops to both lungs plus a margin
(:func:`tb_service.lungmask.box_with_margin`). An implausible mask never falls back silently:
the crop keeps the whole image (nothing of the film is cut away) AND the image's reasons get
:attr:`ReliabilityReason.implausible_lung_mask`, which raises the result's reliability flag.

The segmentation model's own input is :func:`seg_pipeline`; its card records those steps, and
:class:`LungSegCrop` refuses a model whose card records others. Inside the chest pipeline the
crop step comes right after the same first steps (gray, downscale, median), so the network sees
exactly what it was trained on. ``describe()`` of the crop step carries the model's name,
version and sha256, so a screen's card pins the segmentation model it was trained behind.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.contracts.screening import ReliabilityReason
from shared.model import ModelRepository, OnnxModel, check_preprocessing
from shared.transforms import Compose, Transform
from tb_service.lungmask import (
    LungMargin,
    LungMaskCheck,
    LungMaskLimits,
    box_with_margin,
    check_lung_mask,
    scale_box,
)
from tb_service.preprocess import (
    ChestInput,
    Downscale,
    MedianDenoise,
    Normalise,
    ResizeSquare,
    ToGrayUint8,
    Work,
    crop_work,
)

SEG_MODEL = "lung-seg"
SEG_INPUT_SIZE = 128
MODELS_DIR = Path(__file__).resolve().parent / "models"


def seg_pipeline(size: int = SEG_INPUT_SIZE) -> Compose[ChestInput]:
    """The segmentation network's input: the chest pipeline's first steps, then the squashed
    square (no letterbox), z-scored. Output "lung" [N, size, size] = P(lung) per pixel."""
    return Compose(
        [
            ToGrayUint8(),
            Downscale(max_side=512),
            MedianDenoise(ksize=3),
            ResizeSquare(size),
            Normalise("zscore"),
        ]
    )


@functools.cache
def committed_seg_model(models_dir: Path = MODELS_DIR) -> OnnxModel:
    """The newest committed ``lung-seg`` model, loaded once per process (CPU; training caches,
    evaluation and tests use it; the service passes the model its repository loaded)."""
    folder = ModelRepository(models_dir, required=[SEG_MODEL]).discover().get(SEG_MODEL)
    if folder is None:
        raise FileNotFoundError(f"no {SEG_MODEL} model under {models_dir}")
    model = OnnxModel(folder, use_gpu=False, intra_op_threads=1, warmup_runs=1)
    model.load()
    return model


class LungSegmenter:
    """The segmentation model with its input pipeline and threshold: pixels -> lung mask."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        spec = model.card.inputs[0].shape if model.card.inputs else []
        self.size = int(spec[1]) if len(spec) > 1 and isinstance(spec[1], int) else SEG_INPUT_SIZE
        check_preprocessing(model.card, seg_pipeline(self.size))
        self.threshold = model.card.threshold_for("lung")
        self._tail: Compose[ChestInput] = Compose(
            list(seg_pipeline(self.size))[3:]  # resize + normalise: the steps after median
        )

    def probabilities(self, work: Work) -> NDArray[np.float32]:
        """P(lung) on the (size, size) squashed square of ``work``'s pixels."""
        x = self._tail(work).image[None]
        out = self.model.run_single_input(x)
        p: NDArray[np.float32] = np.asarray(out["lung"], dtype=np.float32)[0]
        return p

    def mask(self, work: Work) -> NDArray[np.bool_]:
        m: NDArray[np.bool_] = self.probabilities(work) >= self.threshold
        return m


class LungSegCrop(Transform):
    """Crop to both lung fields plus a margin; an implausible mask keeps the whole image and
    flags the result (``implausible_lung_mask``)."""

    name = "lung_seg_crop"

    def __init__(
        self,
        model: OnnxModel | None = None,
        *,
        margin: LungMargin | None = None,
        limits: LungMaskLimits | None = None,
    ) -> None:
        self._seg = LungSegmenter(model or committed_seg_model())
        card = self._seg.model.card
        # Public attributes are the step's parameters (card preprocessing): which model, at
        # which threshold, and how the box and the plausibility are decided.
        self.model = {"name": card.name, "version": card.version, "sha256": card.sha256}
        self.input_size = self._seg.size
        self.threshold = self._seg.threshold
        self._margin = margin or LungMargin()
        self._limits = limits or LungMaskLimits()
        self.margin = asdict(self._margin)
        self.plausibility = asdict(self._limits)
        self.fallback = "whole_image"

    def check(self, work: Work) -> LungMaskCheck:
        """The mask's verdict for ``work`` (its box in mask pixels)."""
        return check_lung_mask(self._seg.mask(work), self._limits)

    def __call__(self, data: Any) -> Work:
        if not isinstance(data, Work):
            raise TypeError(f"expected Work, got {type(data).__name__}")
        verdict = self.check(data)
        if not verdict.plausible or verdict.box is None:
            return Work(
                data.pixels,
                data.crop_box,
                data.original_size,
                data.scale,
                [*data.reasons, ReliabilityReason.implausible_lung_mask],
            )
        h, w = data.pixels.shape[:2]
        box = scale_box(verdict.box, (self.input_size, self.input_size), (w, h))
        return crop_work(data, box_with_margin(box, (w, h), self._margin))


def lung_mask_on(work: Work, model: OnnxModel | None = None) -> NDArray[np.bool_]:
    """The thresholded mask resized onto ``work``'s pixels (evaluation helper)."""
    seg = LungSegmenter(model or committed_seg_model())
    h, w = work.pixels.shape[:2]
    p = cv2.resize(seg.probabilities(work), (w, h), interpolation=cv2.INTER_LINEAR)
    out: NDArray[np.bool_] = p >= seg.threshold
    return out
