"""The mammography pipeline: decode → orientation → crop → enhance → centers → heatmaps →
classify, per view; then per breast and per exam.

Contract with the service (``bc_service.app``): build one :class:`MammoPipeline` per process
from the loaded :class:`shared.model.ModelRepository`, call :meth:`MammoPipeline.run_view`
from a worker thread for each uploaded view (it reports progress after every stage), then
:meth:`MammoPipeline.combine` the view results into an exam.

Models used (folders under ``bc_service/models``): ``mammo-gate`` (is this a mammogram?),
``mammo-patch`` (normal / benign / malignant tissue patch classifier), ``mammo-view``
(calibrated logistic model on heatmap statistics). When one is missing from the repository
the pipeline falls back to a clearly marked heuristic for that stage (notes in the log);
the service lists all three in ``required_models``, so in production none is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

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
from shared.contracts.common import CropBox, ModelRef, PngImage
from shared.contracts.mammo import (
    STAGES,
    BreastResult,
    ExamResult,
    MammoLabel,
    Probabilities,
    ViewResult,
    ViewTag,
)
from shared.imaging import DecodedImage
from shared.model import ModelRepository, OnnxModel
from shared.overlay import png_image, solid_palette, to_levels
from shared.transforms import Compose

__all__ = ["STAGE_WEIGHTS", "MammoPipeline", "MammoState", "ViewInput", "heatmap_png"]

log = logging.getLogger("irmi.bc.pipeline")

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

DEFAULT_THRESHOLDS = {"benign": 0.5, "malignant": 0.5}


@dataclass
class ViewInput:
    view_id: str  # "view-0", ...
    image: DecodedImage  # from shared.imaging.decode_image
    tag: ViewTag | None  # given by the client, or None: detect it


def _predictor(model: OnnxModel) -> Predictor:
    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = model.run_single_input(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(next(iter(out.values())), dtype=np.float32)

    return run


def _threshold(model: OnnxModel | None, key: str, default: float) -> float:
    if model is None:
        return default
    t = model.card.threshold
    if isinstance(t, int | float):
        return float(t)
    if isinstance(t, dict):
        v = t.get(key)
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, dict) and isinstance(v.get("value"), int | float):
            return float(v["value"])
    return default


def heatmap_png(heat: NDArray[np.float32], colour: tuple[int, int, int]) -> PngImage:
    """Overlay PNG: the class colour, alpha proportional to the probability (0 below 0.05)."""
    return png_image(to_levels(heat), solid_palette(colour))


class MammoPipeline:
    """Runs the stages for one view at a time; thread-safe (no per-call state on self)."""

    required_models: ClassVar[list[str]] = ["mammo-gate", "mammo-patch", "mammo-view"]

    def __init__(
        self,
        models: ModelRepository,
        *,
        patch_batch_size: int = 64,
        heatmaps: bool = True,
        stride: int = 16,
        gate: bool = True,
    ) -> None:
        """``gate=False`` skips the mammogram-or-not model (tests on synthetic phantoms);
        the DICOM modality and blank-image checks still run."""
        self.models = models
        self.heatmaps = heatmaps
        gate_model = models.models.get("mammo-gate") if gate else None
        patch = models.models.get("mammo-patch")
        view = models.models.get("mammo-view")
        self._used = [m for m in (gate_model, patch, view) if m is not None]
        for name in self.required_models:
            if name not in models.models:
                log.warning("model %s not loaded: its stage uses an untrained heuristic", name)
        self.gate_threshold = _threshold(gate_model, "mammogram", 0.5)
        self.thresholds = {
            "benign": _threshold(view, "benign", DEFAULT_THRESHOLDS["benign"]),
            "malignant": _threshold(view, "malignant", DEFAULT_THRESHOLDS["malignant"]),
        }
        self.stages = [
            Decode(_predictor(gate_model) if gate_model else None, self.gate_threshold),
            Orientation(),
            Crop(),
            Enhance(),
            Centers(stride=stride),
            Heatmaps(_predictor(patch) if patch else None, stride, patch_batch_size),
            Classify(_predictor(view) if view else None),
        ]
        assert [s.stage_name for s in self.stages] == STAGES

    def model_refs(self) -> list[ModelRef]:
        return [ModelRef(name=m.name, version=m.version, sha256=m.card.sha256) for m in self._used]

    def label(self, benign: float, malignant: float) -> MammoLabel:
        if malignant >= self.thresholds["malignant"]:
            return "malignant"
        if benign >= self.thresholds["benign"]:
            return "benign"
        return "normal"

    def run_state(
        self, view: ViewInput, progress: Callable[[str, float], None] | None = None
    ) -> tuple[MammoState, dict[str, float]]:
        """All stages; returns the final state (arrays included) and timings in ms."""
        state = MammoState(image=view.image, given_tag=view.tag)

        def on_stage(name: str, ms: float) -> None:
            if progress is not None:
                progress(name, STAGE_WEIGHTS.get(name, 1.0))

        state, timings = Compose[MammoState](self.stages, on_stage=on_stage).run(state)
        return state, dict(timings.ms)

    def run_view(self, view: ViewInput, progress: Callable[[str, float], None]) -> ViewResult:
        """Blocking; raises NotAMammogram / InvalidImage for bad input."""
        s, timings = self.run_state(view, progress)
        t0 = time.perf_counter()
        detected_tag: ViewTag = f"{s.detected_laterality}-{s.detected_view}"  # type: ignore[assignment]
        given = view.tag or s.dicom_tag
        used: ViewTag = given or detected_tag
        conflict = _conflict(given, detected_tag, s, from_dicom=view.tag is None)
        if view.tag and s.dicom_tag and view.tag != s.dicom_tag:
            extra = f"the DICOM tags say {s.dicom_tag}, the request says {view.tag}"
            conflict = f"{conflict}; {extra}" if conflict else extra
        lat, kind = used.split("-")
        benign, malignant = s.probabilities
        heatmaps: dict[Literal["benign", "malignant"], PngImage] = {}
        if self.heatmaps:
            heatmaps["benign"] = heatmap_png(s.map_to_original(s.heatmaps["benign"]), (0, 200, 0))
            heatmaps["malignant"] = heatmap_png(
                s.map_to_original(s.heatmaps["malignant"]), (230, 0, 0)
            )
        x0, y0, x1, y1 = s.crop_box
        # Overlay PNGs at original size: reported apart from the patch stage itself.
        timings["heatmap_png"] = (time.perf_counter() - t0) * 1000
        return ViewResult(
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
            probabilities=Probabilities(benign=_p(benign), malignant=_p(malignant)),
            label=self.label(benign, malignant),
            heatmaps=heatmaps,
            timings_ms={k: round(v, 2) for k, v in timings.items()},
        )

    def combine(self, views: list[ViewResult]) -> ExamResult:
        """Per breast: the mean of its views (NYU averages CC and MLO); exam: the worse breast."""
        breasts: list[BreastResult] = []
        for lat in ("L", "R"):
            mine = [v for v in views if v.laterality == lat]
            if not mine:
                continue
            b = float(np.mean([v.probabilities.benign for v in mine]))
            m = float(np.mean([v.probabilities.malignant for v in mine]))
            breasts.append(
                BreastResult(
                    laterality=lat,
                    views=[v.view_id for v in mine],
                    probabilities=Probabilities(benign=_p(b), malignant=_p(m)),
                    label=self.label(b, m),
                )
            )
        eb = max((x.probabilities.benign for x in breasts), default=0.0)
        em = max((x.probabilities.malignant for x in breasts), default=0.0)
        timings: dict[str, float] = {}
        for v in views:
            for k, ms in v.timings_ms.items():
                timings[k] = round(timings.get(k, 0.0) + ms, 2)
        return ExamResult(
            views=views,
            breasts=breasts,
            probabilities=Probabilities(benign=_p(eb), malignant=_p(em)),
            label=self.label(eb, em),
            models=self.model_refs(),
            timings_ms=timings,
        )

    def describe(self) -> list[dict[str, Any]]:
        return Compose[MammoState](self.stages).describe()


def _p(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _conflict(
    given: ViewTag | None, detected: ViewTag, s: MammoState, *, from_dicom: bool
) -> str | None:
    if given is None:
        return None
    src = "DICOM tags" if from_dicom else "given tag"
    parts = []
    glat, gview = given.split("-")
    if glat != s.detected_laterality and s.side_confidence >= 0.75:
        wall = "right" if s.chest_wall == "right" else "left"
        parts.append(
            f"{src} say laterality {glat}, but the chest wall is on the image's {wall} "
            f"(a {s.detected_laterality} breast under the standard display convention)"
        )
    if gview != s.detected_view and s.view_confidence >= 0.8:
        parts.append(f"{src} say {gview}, but the breast's shape looks {s.detected_view}")
    return "; ".join(parts) or None
