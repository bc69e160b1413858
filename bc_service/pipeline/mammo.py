"""The mammography model definition on the inference kit: decode → orientation → crop →
enhance → centers → heatmaps → classify per view (``bc_service.pipeline.stages``), then per
breast and per exam.

Contract with the service (``bc_service.app``): build one :class:`MammoPipeline` per process
from the loaded :class:`shared.model.ModelRepository`, warm it up, call
:meth:`MammoPipeline.run_view` from a worker thread for each uploaded view (it reports progress
after every stage), then :meth:`MammoPipeline.combine` the view results into an exam.

Models used (folders under ``bc_service/models``): ``mammo-gate`` (is this a mammogram?),
``mammo-patch`` (normal / benign / malignant tissue patch classifier), ``mammo-view``
(calibrated logistic model on heatmap statistics). Each card's preprocessing must be the stages
up to the one that runs it (checked at start). When one is missing from the repository the
pipeline falls back to a clearly marked heuristic for that stage (notes in the log); the service
lists all three in ``required_models``, so in production none is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.combine import combine_exam
from bc_service.pipeline.evidence import view_inputs
from bc_service.pipeline.overlay import heatmap_png
from bc_service.pipeline.score_map import score_map
from bc_service.pipeline.stages import (
    Centers,
    Classify,
    Crop,
    Decode,
    Enhance,
    Heatmaps,
    MammoState,
    Orientation,
    Predictor,
)
from shared.contracts.common import CropBox, PngImage
from shared.contracts.mammo import STAGES, ExamResult, ViewResult, ViewTag
from shared.contracts.screening import Category, OperatingPoint, category_at
from shared.imaging import DecodedImage, ImageLimits
from shared.inference import ImageModel
from shared.model import CardOperatingPoint, ModelRepository, OnnxModel
from shared.transforms import Compose, StageTimings, Transform

log = logging.getLogger("irmi.bc.pipeline")

Progress = Callable[[str, float], None]

# Share of a view's work done after each stage (heatmaps dominate), for progress reports.
STAGE_WEIGHTS: dict[str, float] = {
    "decode": 0.05,
    "orientation": 0.08,
    "crop": 0.12,
    "enhance": 0.15,
    "centers": 0.17,
    "heatmaps": 0.9,
    "classify": 1.0,
}

FALLBACK_THRESHOLD = 50.0  # the untrained fallback's 0-100 threshold (no operating point)

SCREEN_STAGES = STAGES.index("crop") + 1  # decode, orientation, crop: run at submission

# Each model's input is made by the stages up to (and including) the one that runs it.
MODEL_STAGES: dict[str, str] = {
    "mammo-gate": "decode",
    "mammo-patch": "heatmaps",
    "mammo-view": "classify",
    "mammo-density": "classify",
}


@dataclass
class ViewInput:
    view_id: str  # "view-0", ...
    image: DecodedImage  # from shared.imaging.decode_image
    tag: ViewTag | None  # given by the client, or None: detect it
    progress: Progress | None = None  # told after every stage (stage, share of the view done)
    # What :meth:`MammoPipeline.screen` made of it at submission (decode, orientation, crop)
    # and those stages' timings: the job goes on from there instead of running them again.
    screened: tuple[MammoState, StageTimings] | None = None


def _predictor(model: OnnxModel) -> Predictor:
    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = model.run_single_input(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(next(iter(out.values())), dtype=np.float32)

    return run


def warmup_phantom(h: int = 1024, w: int = 832) -> NDArray[np.uint8]:
    """A textured breast-shaped blob against the chest wall on the left: every stage runs on
    it (the gate's verdict aside), so warm-up reaches the patch model and the overlays."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = ((xx / (0.75 * w)) ** 2 + ((yy - 0.6 * h) / (0.62 * h)) ** 2) <= 1.0
    tissue = 90 + 60 * cv2.GaussianBlur(rng.random((h, w)), (0, 0), 6)
    return np.clip(np.where(inside, tissue, 6.0), 0, 255).astype(np.uint8)


@dataclass
class ViewRun:
    """One view between the stages: the request and the state the stages have built."""

    view: ViewInput
    state: MammoState


class MammoPipeline(ImageModel[ViewInput, ViewRun, ViewRun, ViewResult]):
    """Runs the stages for one view at a time; thread-safe (no per-call state on self)."""

    required_models: ClassVar[list[str]] = [
        "mammo-gate",
        "mammo-patch",
        "mammo-view",
        "mammo-density",
    ]
    warmup_modality = "MG"

    def __init__(
        self,
        models: ModelRepository,
        *,
        patch_batch_size: int = 64,
        heatmaps: bool = False,
        stride: int = 16,
        gate: bool = True,
        strict_preprocessing: bool = True,
    ) -> None:
        """``gate=False`` skips the mammogram-or-not model (tests on synthetic phantoms);
        the DICOM modality and blank-image checks still run."""
        super().__init__(models, ImageLimits(), strict_preprocessing=strict_preprocessing)
        self.heatmaps = heatmaps
        found = models.models
        gate_model = found.get("mammo-gate") if gate else None
        patch, view = found.get("mammo-patch"), found.get("mammo-view")
        for name in self.required_models:
            if name not in found:
                log.warning("model %s not loaded: its stage uses an untrained heuristic", name)
        density = found.get("mammo-density")
        self.gate_threshold = gate_model.card.threshold_for("mammogram") if gate_model else 0.5
        # Views read with the other breast at the card's operating point, views without it at
        # its unilateral point; the untrained fallback at a bare threshold (no point).
        self.operating_point: OperatingPoint | None = (
            view.card.card_point() if view and view.card.operating_point else None
        )
        self.unilateral_point = _unilateral_point(view) if view else None
        if view is not None and self.operating_point is None:
            log.warning("mammo-view card has no operating_point: read at a bare threshold")
        self.score_threshold = (
            self.operating_point.score_threshold if self.operating_point else FALLBACK_THRESHOLD
        )
        self.unilateral_threshold = (
            self.unilateral_point.score_threshold if self.unilateral_point else self.score_threshold
        )
        estimate = (view.card.model_extra or {}).get("malignancy_estimate", {}) if view else {}
        self.malignancy_shown = bool(estimate.get("shown", False))
        self.malignancy_note: str | None = (
            None
            if self.malignancy_shown
            else (estimate.get("why_not") or "No benign-vs-malignant estimate is given.")
        )
        self._view_model = _predictor(view) if view else None
        self.stride = stride
        self.stages: list[Transform] = [
            Decode(_predictor(gate_model) if gate_model else None, self.gate_threshold),
            Orientation(),
            Crop(),
            Enhance(),
            Centers(stride=stride),
            Heatmaps(_predictor(patch) if patch else None, stride, patch_batch_size),
            Classify(self._view_model, _predictor(density) if density else None),
        ]
        assert [s.stage_name for s in self.stages] == STAGES
        for name, model in (
            ("mammo-gate", gate_model),
            ("mammo-patch", patch),
            ("mammo-view", view),
            ("mammo-density", density),
        ):
            if model is not None:
                self.bind(name, self.model_pipeline(name))
        # Warm-up only: the same stages with a gate that lets the phantom through.
        self._warm_stages = [
            Decode(_predictor(gate_model) if gate_model else None, 0.0),
            *self.stages[1:],
        ]

    def model_pipeline(self, name: str) -> Compose[MammoState]:
        """The stages that make model ``name``'s input (what its card must record)."""
        last = STAGES.index(MODEL_STAGES[name])
        return Compose[MammoState](self.stages[: last + 1])

    def category(self, score: float, threshold: float | None = None) -> Category:
        """The one rule for every view (shared ``category_at``, the rule of ``categorize``),
        at ``threshold`` (the contralateral point's by default)."""
        return category_at(score, self.score_threshold if threshold is None else threshold)

    # ------------------------------------------------------------------ the served path

    def _run_stages(
        self, stages: list[Transform], state: MammoState, progress: Progress | None
    ) -> tuple[MammoState, StageTimings]:
        def on_stage(name: str, ms: float) -> None:
            if progress is not None:
                progress(name, STAGE_WEIGHTS.get(name, 1.0))

        return Compose[MammoState](stages, on_stage=on_stage).run(state)

    def preprocess(self, request: ViewInput, timings: StageTimings) -> ViewRun:
        """decode (with the validity gate) → orientation → crop → enhance → centers."""
        done = 0
        state = MammoState(image=request.image, given_tag=request.tag)
        if request.screened is not None:
            state, screened_t = request.screened
            timings.merge(screened_t)
            done = SCREEN_STAGES
            for name in STAGES[:done]:
                if request.progress is not None:
                    request.progress(name, STAGE_WEIGHTS.get(name, 1.0))
        state, t = self._run_stages(self.stages[done:5], state, request.progress)
        timings.merge(t)
        return ViewRun(request, state)

    def predict(self, prepared: ViewRun, timings: StageTimings) -> ViewRun:
        """The patch model's heatmaps, then the view model."""
        state, t = self._run_stages(self.stages[5:], prepared.state, prepared.view.progress)
        timings.merge(t)
        return ViewRun(prepared.view, state)

    def postprocess(self, prepared: ViewRun, scored: ViewRun, timings: StageTimings) -> ViewResult:
        """Tags, conflicts, labels and the overlay PNGs at the original size."""
        view, s = scored.view, scored.state
        t0 = time.perf_counter()
        detected_tag: ViewTag = f"{s.detected_laterality}-{s.detected_view}"  # type: ignore[assignment]
        given = view.tag or s.dicom_tag
        used: ViewTag = given or detected_tag
        conflict = _conflict(given, detected_tag, s, from_dicom=view.tag is None)
        if view.tag and s.dicom_tag and view.tag != s.dicom_tag:
            extra = (
                f"The DICOM tags say {s.dicom_tag}, but the request says {view.tag}; "
                "the request's tag is used."
            )
            conflict = f"{conflict} {extra}" if conflict else extra
        lat, kind = used.split("-")
        heatmaps: dict[Literal["benign", "malignant"], PngImage] = {}
        if self.heatmaps:
            heatmaps["benign"] = heatmap_png(s.map_to_original(s.heatmaps["benign"]), (0, 200, 0))
            heatmaps["malignant"] = heatmap_png(
                s.map_to_original(s.heatmaps["malignant"]), (230, 0, 0)
            )
        x0, y0, x1, y1 = s.crop_box
        grid = score_map(s, self.stride)
        # Score map (and the deprecated overlay PNGs): reported apart from the patch stage.
        timings.add("heatmap_png", (time.perf_counter() - t0) * 1000)
        score = suspicion(s.p_abnormal)
        result = ViewResult(
            view_id=view.view_id,
            given_tag=view.tag,
            tag=used,
            laterality=lat,
            view=kind,
            detected_laterality=s.detected_laterality,
            detected_view=s.detected_view,
            detection_confidence=round(min(s.side_confidence, s.view_confidence), 4),
            tag_conflict=conflict,
            flipped=s.flipped,
            crop_box=CropBox(x0=x0, y0=y0, x1=x1, y1=y1),
            score=score,
            comparison="unilateral",
            score_threshold=self.unilateral_threshold,
            category=self.category(score, self.unilateral_threshold),
            score_map=grid,
            heatmaps=heatmaps,
            timings_ms={k: round(v, 2) for k, v in timings.ms.items()},
        )
        # For the exam's combine: read again with the other breast when it is there.
        result._evidence = s.maps
        result._malignancy = s.p_malignancy
        result._density = s.density
        return result

    def screen(self, view: ViewInput) -> None:
        """The refusals that need no patch model, run at submission so that a file that is
        not a mammogram is answered 422 ``not_a_mammogram`` before the exam is accepted:
        decode (DICOM modality, blank image, the ``mammo-gate`` model), orientation (a breast
        is found) and crop (its size and shape). A few tens of milliseconds per view at
        1024 px; the view keeps what they made (``view.screened``) and its job goes on from
        there."""
        state = MammoState(image=view.image, given_tag=view.tag)
        state, timings = Compose[MammoState](self.stages[:SCREEN_STAGES]).run(state)
        view.screened = (state, timings)

    def run_view(self, view: ViewInput, progress: Progress) -> ViewResult:
        """Blocking; raises NotAMammogram / InvalidImage for bad input."""
        return self.infer(ViewInput(view.view_id, view.image, view.tag, progress, view.screened))

    def run_state(
        self, view: ViewInput, progress: Progress | None = None
    ) -> tuple[MammoState, dict[str, float]]:
        """All stages; returns the final state (arrays included) and timings in ms."""
        state = MammoState(image=view.image, given_tag=view.tag)
        state, timings = self._run_stages(self.stages, state, progress)
        return state, dict(timings.ms)

    # ------------------------------------------------------------------ warm-up

    def warmup_pixels(self) -> NDArray[np.uint8]:
        return warmup_phantom()

    def warmup_input(self, image: DecodedImage) -> ViewInput:
        return ViewInput("warm-up", image, None)

    def warm(self, request: ViewInput) -> None:
        """Every stage and the overlays, whatever the gate says of the phantom."""
        state = MammoState(image=request.image, given_tag=request.tag)
        state, _ = self._run_stages(self._warm_stages, state, None)
        run = ViewRun(request, state)
        self.postprocess(run, run, StageTimings())

    def combine(self, views: list[ViewResult]) -> ExamResult:
        """Views read with the other breast where it is there, then per breast and per exam
        (:func:`bc_service.pipeline.combine.combine_exam`)."""
        return combine_exam(self, views)

    def bilateral_probability(self, view: ViewResult, other: ViewResult) -> float | None:
        """P(abnormal) of ``view`` read with ``other`` (the other breast, same view kind);
        None without a view model or evidence."""
        if self._view_model is None or view._evidence is None or other._evidence is None:
            return None
        x = view_inputs(view._evidence, other._evidence)[None, :]
        return float(self._view_model(x).reshape(-1)[0])


def _unilateral_point(view: OnnxModel) -> OperatingPoint | None:
    """The card's ``operating_point_unilateral`` as the contract's point (None on a card
    without one: model 1's)."""
    raw = (view.card.model_extra or {}).get("operating_point_unilateral")
    if raw is None:
        return None
    section = CardOperatingPoint.model_validate(raw)
    return OperatingPoint(source="card", model=view.card.ref(), **section.model_dump())


def suspicion(p_abnormal: float) -> float:
    """The suspicion score: 100 x mammo-view/2's calibrated P(abnormal), 0-100, two places.
    A relative score at mini-MIAS's prevalence, never a risk."""
    return round(100.0 * float(np.clip(p_abnormal, 0.0, 1.0)), 2)


SIDE_WORDS = {"L": "left", "R": "right"}


def _conflict(
    given: ViewTag | None, detected: ViewTag, s: MammoState, *, from_dicom: bool
) -> str | None:
    """What a given tag contradicts in the image, in whole sentences (None: nothing)."""
    if given is None:
        return None
    src = "The DICOM tags say" if from_dicom else "The tag sent with the image says"
    parts = []
    glat, gview = given.split("-")
    if glat != s.detected_laterality and s.side_confidence >= 0.75:
        wall = "right" if s.chest_wall == "right" else "left"
        parts.append(
            f"{src} this is the {SIDE_WORDS[glat]} breast ({given}), but the chest wall is on "
            f"the image's {wall}, which the standard display convention uses for the "
            f"{SIDE_WORDS[s.detected_laterality]} breast (laterality {s.detected_laterality})."
        )
    if gview != s.detected_view and s.view_confidence >= 0.8:
        article = "an" if s.detected_view == "MLO" else "a"
        parts.append(
            f"{src} this is a {gview} view, but the breast's shape looks like "
            f"{article} {s.detected_view} view."
        )
    return " ".join(parts) or None
