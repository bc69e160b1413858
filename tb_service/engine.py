"""The chest X-ray engine: preprocess → (batched) gate + abnormality model → postprocess.

KServe-style separation: routes never touch ONNX Runtime; they call :meth:`ChestEngine.serve`.

Per request, off the event loop: decode, one conversion to 8-bit gray, then the gate's and the
abnormality model's preprocessing pipelines. With batching off (``settings.batching``: the
CPU default) the whole path runs in one CPU-pool call; with it on, the prepared tensors go
through one :class:`DynamicBatcher`, whose
batch function runs the gate on the whole batch in one ONNX run and the abnormality model, in one
more run, on the items the gate let through. Postprocessing (probabilities, findings, the CAM
heatmap PNG) runs off the loop again. An image the gate refuses raises ``not_a_chest_xray``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.batching import Admission, DynamicBatcher, batching_enabled
from shared.contracts.chest import ChestPrediction, Finding, Orientation, Validity
from shared.contracts.common import CropBox, PngImage
from shared.contracts.screening import Category, ReliabilityReason, assess_reliability, categorize
from shared.errors import InvalidImage, IRMIError, NotAChestXray, ServiceUnavailable
from shared.imaging import DecodedImage, as_gray8
from shared.inference import ImageModel
from shared.inference import probability as _prob
from shared.metrics import ServiceMetrics
from shared.model import ModelRepository, OnnxModel, PreprocessingMismatch
from shared.service import ServiceContext
from shared.transforms import Compose, StageTimings
from tb_service.heatmap import heatmap_png
from tb_service.orientation import (
    Decision,
    Orienter,
    box_to_uploaded,
    levels_to_uploaded,
    upright_image,
)
from tb_service.reading import score_map, served_point
from tb_service.reliability import EMBEDDING, load_population
from tb_service.settings import Settings
from tb_service.validity import check_header

__all__ = ["ChestEngine", "Outcome", "PreprocessingMismatch", "input_side", "unavailable"]

log = logging.getLogger("irmi.tb.engine")

PNEUMONIA_NOTE = (
    "The screen was trained with pneumonia as its abnormal class (NIH ChestX-ray14 adults and "
    "Kermany pediatric); other abnormalities, tuberculosis included, may also raise it. The "
    "bacterial/viral split comes from pediatric data only."
)


def input_side(model: OnnxModel, fallback: int) -> int:
    """S of an [N, S, S, 1] input, or ``fallback`` when the axis is dynamic."""
    side: object = None
    try:
        side = model.input_specs()[0][1][1]
    except Exception:
        shape = model.card.inputs[0].shape if model.card.inputs else []
        side = shape[1] if len(shape) > 1 else None
    return int(side) if isinstance(side, int) and side > 1 else fallback


@dataclass
class Prepared:
    """One request after decode and preprocessing, ready for the batch."""

    gate_image: NDArray[np.float32]
    chest: Any | None  # tb_service.preprocess.ChestInput, or None if its pipeline failed
    chest_error: IRMIError | None
    original_size: tuple[int, int]
    timings: StageTimings = field(default_factory=StageTimings)
    # Reliability reasons found before the chest pipeline (e.g. orientation); the pipeline's
    # own are on ``chest.reasons``.
    reasons: list[ReliabilityReason] = field(default_factory=list)
    # The orientation model's decision (None without that model): the pipelines ran on the
    # film turned upright, crop box and heatmap are turned back onto the upload.
    orientation: Decision | None = None


@dataclass
class Scored:
    """The batch's raw outputs for one item (batch-level model times, shared by its items)."""

    chest_score: float
    passed: bool
    abnormal: NDArray[np.float32] | None = None  # [p_normal, p_abnormal]
    cam: NDArray[np.float32] | None = None
    subtype: NDArray[np.float32] | None = None  # [p_bacterial, p_viral]
    distance: float | None = None  # from the validated population, in units of its limit
    position: list[float] | None = None  # whitened embedding (PopulationDistance.position)
    gate_ms: float = 0.0
    inference_ms: float = 0.0


@dataclass
class Outcome:
    prediction: ChestPrediction
    batch_size: int


class ChestEngine(ImageModel[DecodedImage, Prepared, Scored, ChestPrediction]):
    """The chest model definition: the gate and the abnormality model with their pipelines,
    the batcher and the admission bound."""

    def __init__(
        self,
        settings: Settings,
        models: ModelRepository,
        ctx: ServiceContext,
        *,
        gate_pipeline: Compose[Any] | None = None,
        chest_pipeline: Compose[Any] | None = None,
    ) -> None:
        super().__init__(
            models, settings.limits(), strict_preprocessing=settings.strict_preprocessing
        )
        from tb_service import preprocess

        self.settings = settings
        self.ctx = ctx
        self.metrics: ServiceMetrics = ctx.metrics
        gate_model = models.get(settings.gate_model)
        abnormality_model = models.get(settings.abnormality_model)
        fallback = int(preprocess.INPUT_SIZE)
        self.gate_pipeline: Compose[Any] = gate_pipeline or preprocess.gate_pipeline(
            input_side(gate_model, fallback)
        )
        # The crop step the abnormality card records: lung_seg_crop runs the lung-seg model.
        seg = models.models.get(settings.seg_model)
        self.chest_pipeline: Compose[Any] = chest_pipeline or preprocess.chest_pipeline_for(
            abnormality_model.card, input_side(abnormality_model, fallback), seg
        )
        self.gate = self._bound(settings.gate_model, self.gate_pipeline)
        self.abnormality = self._bound(settings.abnormality_model, self.chest_pipeline)
        if seg is not None and "lung_seg_crop" in self.chest_pipeline.stage_names():
            self.bind(settings.seg_model, None)  # its card is checked by LungSegCrop
        oriented = self.bind(settings.orientation_model, self.gate_pipeline)
        self.orienter = Orienter(oriented) if oriented is not None else None
        if self.orienter is None:
            log.warning("no orientation model: rotated and mirrored films are not detected")
        self.gate_threshold = self.gate.card.threshold_for("chest")
        self.abnormal_threshold = self.abnormality.card.threshold_for("abnormal")
        self.operating_point = served_point(self.abnormality.card, self.abnormal_threshold)
        self.population = load_population(self.abnormality)
        self.batcher: DynamicBatcher[Prepared, Scored] = DynamicBatcher(
            "chest",
            self.run_batch,
            ctx.cpu,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            retry_after_s=settings.retry_after_s,
            metrics=ctx.metrics,
            upstream=lambda: self.preparing,
        )
        self.preparing = 0  # requests in decode/preprocessing: batch members on their way
        # Off: each request runs decode to answer in one CPU-pool call, no batch FIFO.
        self.batching = batching_enabled(settings.batching, self.abnormality.provider)
        self.admission = Admission(
            settings.in_flight_limit(),
            "chest-in-flight",
            retry_after_s=settings.retry_after_s,
            metrics=ctx.metrics,
        )

    def _bound(self, name: str, pipeline: Compose[Any]) -> OnnxModel:
        model = self.bind(name, pipeline)
        assert model is not None  # the app builds the engine only when both are loaded
        return model

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.settings.opencv_threads > 0:
            import cv2

            cv2.setNumThreads(self.settings.opencv_threads)
        await self.batcher.start()
        await self.ctx.cpu.run(self.warmup)

    async def stop(self) -> None:
        await self.batcher.stop()

    @property
    def ready(self) -> bool:
        return self.warmed and self.batcher.started

    def warmup_input(self, image: DecodedImage) -> DecodedImage:
        return image

    def warm(self, request: DecodedImage) -> None:
        """Every stage, the abnormality model and the heatmap included, whatever the gate
        says of the synthetic image."""
        prepared = self.preprocess(request, StageTimings())
        scored = self._score([prepared], enforce_gate=False)[0]
        self.finish(prepared, scored, heatmap=True)

    # ------------------------------------------------------------------ stages (blocking)

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one image (blocking: runs on the CPU pool)."""
        timings = StageTimings()
        return self.preprocess(self.decode(data, timings), timings)

    def preprocess(self, request: DecodedImage, timings: StageTimings) -> Prepared:
        """The gate's and the abnormality model's pipelines on one decoded image."""
        header_reasons = check_header(request.meta)  # refuses what a DICOM header rules out
        decoded = as_gray8(request)  # converted once for the orientation, gate and screen
        gate_input = self._gate_input(decoded, timings)
        orientation: Decision | None = None
        if self.orienter is not None:
            with timings.stage("orientation"):
                orientation = self.orienter.assess(gate_input.image)
            if orientation.k:
                decoded = upright_image(decoded, orientation.k)
                gate_input = self._gate_input(decoded, timings)
        chest: Any | None = None
        chest_error: IRMIError | None = None
        try:
            chest, chest_t = self.chest_pipeline.run(decoded)
            timings.merge(chest_t, prefix="preprocess.")
        except IRMIError as exc:
            chest_error = exc
        except Exception as exc:
            # The lung-field pipeline could not cope with this image: the gate decides first
            # (not a chest X-ray → 422 not_a_chest_xray), else invalid_image, never a 500.
            chest_error = InvalidImage(
                "The lung fields could not be located in this image.",
                details={"reason": "preprocessing_failed", "error": type(exc).__name__},
            )
        return Prepared(
            gate_image=np.asarray(gate_input.image, dtype=np.float32),
            chest=chest,
            chest_error=chest_error,
            original_size=(request.width, request.height),
            timings=timings,
            reasons=[*header_reasons, *(orientation.reasons if orientation is not None else [])],
            orientation=orientation,
        )

    def _gate_input(self, decoded: DecodedImage, timings: StageTimings) -> Any:
        try:
            gate_input, gate_t = self.gate_pipeline.run(decoded)
        except IRMIError:
            raise
        except Exception as exc:  # a pathological image must give a 4xx, never a 500
            raise InvalidImage(
                "The image could not be preprocessed.",
                details={"reason": "preprocessing_failed", "error": type(exc).__name__},
            ) from exc
        timings.merge(gate_t, prefix="gate.")
        return gate_input

    def predict(self, prepared: Prepared, timings: StageTimings) -> Scored:
        """One item alone (the served path batches: :meth:`run_batch`)."""
        return self.run_batch([prepared])[0]

    def postprocess(
        self, prepared: Prepared, scored: Scored, timings: StageTimings
    ) -> ChestPrediction:
        return self.finish(prepared, scored, heatmap=self.settings.heatmap)

    def run_batch(self, items: list[Prepared]) -> Sequence[Scored]:
        """One gate run over the batch, one abnormality run over what the gate passed."""
        return self._score(items, enforce_gate=True)

    def _score(self, items: list[Prepared], *, enforce_gate: bool) -> list[Scored]:
        t0 = time.perf_counter()
        gate_out = self.gate.run_single_input(np.stack([p.gate_image for p in items]))
        gate_ms = _ms(t0)
        probs = np.asarray(gate_out["probs"], dtype=np.float32)
        # A non-finite score (NaN) fails the gate rather than reaching the response model.
        scores = [_prob(probs[i, 1], 0.0) for i in range(len(items))]
        results = [
            Scored(chest_score=s, passed=s >= self.gate_threshold, gate_ms=gate_ms) for s in scores
        ]
        todo = [
            i
            for i, p in enumerate(items)
            if (results[i].passed or not enforce_gate) and p.chest is not None
        ]
        if todo:
            t1 = time.perf_counter()
            batch = np.stack([np.asarray(_image(items[i].chest), dtype=np.float32) for i in todo])
            out = self.abnormality.run_single_input(batch)
            inference_ms = _ms(t1)
            abn = np.asarray(out["probs"], dtype=np.float32)
            cam = np.asarray(out["cam"], dtype=np.float32) if "cam" in out else None
            sub = np.asarray(out["subtype"], dtype=np.float32) if "subtype" in out else None
            dist = (
                self.population.distance(out[EMBEDDING])
                if self.population is not None and EMBEDDING in out
                else None
            )
            pos = (
                self.population.position(out[EMBEDDING])
                if self.population is not None and EMBEDDING in out
                else None
            )
            for j, i in enumerate(todo):
                r = results[i]
                if pos is not None and np.isfinite(pos[j]).all():
                    r.position = [round(float(v), 5) for v in pos[j]]
                r.abnormal = abn[j]
                r.cam = cam[j] if cam is not None else None
                r.subtype = sub[j] if sub is not None else None
                r.distance = float(dist[j]) if dist is not None else None
                r.inference_ms = inference_ms
        return results

    def finish(self, prepared: Prepared, scored: Scored, heatmap: bool) -> ChestPrediction:
        """Probabilities, label, findings and heatmap (blocking: runs on the CPU pool)."""
        timings = prepared.timings.ms
        validity = Validity(
            score=round(scored.chest_score, 6),
            threshold=self.gate_threshold,
            passed=scored.passed,
        )
        if not scored.passed and scored.abnormal is None:
            raise NotAChestXray(details={"score": validity.score, "threshold": validity.threshold})
        if prepared.chest_error is not None:
            raise prepared.chest_error
        assert scored.abnormal is not None and prepared.chest is not None
        if not np.isfinite(scored.abnormal[1]):
            raise InvalidImage(
                "The model could not score this image.", details={"reason": "non_finite_score"}
            )
        p_abn = _prob(scored.abnormal[1], 0.0)
        p_norm = float(np.clip(1.0 - p_abn, 0.0, 1.0))
        abnormal = p_abn >= self.abnormal_threshold
        chest = prepared.chest
        score = round(100.0 * p_abn, 2)
        reliability = assess_reliability(
            [*prepared.reasons, *chest.reasons],
            scored.distance,
            self.population.quantile if self.population is not None else None,
            scored.position,
        )
        category = categorize(score, self.operating_point, reliability)
        findings: list[Finding] = []
        if category == Category.review_recommended:
            subtypes: dict[str, float] = {}
            if scored.subtype is not None and scored.subtype.size >= 2:
                pb, pv = (_prob(v, 0.5) for v in scored.subtype[:2])
                total = pb + pv
                if total > 0:
                    pb, pv = pb / total, pv / total
                subtypes = {"bacterial": round(pb, 6), "viral": round(pv, 6)}
            findings.append(
                Finding(
                    name="pneumonia",
                    probability=round(p_abn, 6),
                    subtypes=subtypes,
                    note=PNEUMONIA_NOTE,
                )
            )
        box = tuple(int(v) for v in chest.crop_box)
        size = (int(chest.original_size[0]), int(chest.original_size[1]))  # the upright film's
        turns = prepared.orientation.k if prepared.orientation is not None else 0
        ubox = box_to_uploaded(box, size, turns)  # type: ignore[arg-type]
        png: PngImage | None = None
        if heatmap and scored.cam is not None:
            t0 = time.perf_counter()
            data, width, height = heatmap_png(
                scored.cam,
                box,  # type: ignore[arg-type]
                size,
                self.settings.heatmap_max_alpha,
                self.settings.heatmap_max_side,
                turns=turns,
            )
            png = PngImage(
                width=width, height=height, base64=base64.b64encode(data).decode("ascii")
            )
            timings["heatmap"] = _ms(t0)
        return ChestPrediction(
            validity=validity,
            category=category,
            operating_point=self.operating_point,
            label="abnormal" if abnormal else "normal",
            probabilities={"normal": round(p_norm, 6), "abnormal": round(p_abn, 6)},
            score=score,
            threshold=self.abnormal_threshold,
            findings=findings,
            score_map=None
            if scored.cam is None
            else score_map(levels_to_uploaded(scored.cam, turns), ubox, prepared.original_size),
            heatmap=png,
            crop_box=CropBox(x0=ubox[0], y0=ubox[1], x1=ubox[2], y1=ubox[3]),
            orientation=_orientation(prepared.orientation),
            reliability=reliability,
            models=self.model_refs(),
            timings_ms={k: round(v, 3) for k, v in timings.items()},
        )

    # ------------------------------------------------------------------ async API

    async def serve(self, data: bytes, *, heatmap: bool = False) -> Outcome:
        """The whole path for one image; raises IRMIError subclasses for every refusal."""
        try:
            with self.admission.slot():
                return await self._predict(data, heatmap=heatmap and self.settings.heatmap)
        except IRMIError as exc:
            self.metrics.errors.labels(self.metrics.service, exc.code).inc()
            raise

    async def _predict(self, data: bytes, *, heatmap: bool) -> Outcome:
        if not self.batching:
            return await self.ctx.cpu.run(self._serve_one, data, heatmap, time.perf_counter())
        t_start = time.perf_counter()
        self.preparing += 1
        try:
            prepared = await self.ctx.cpu.run(self.prepare, data)
        finally:
            self.preparing -= 1
        batched = await self.batcher.submit(prepared)
        scored = batched.value
        _note_model_times(prepared, scored, batched.wait_ms)
        try:
            prediction = await self.ctx.cpu.run(self.finish, prepared, scored, heatmap)
        finally:
            self._observe(prepared, t_start)
        prediction.timings_ms["total"] = round(prepared.timings.ms["total"], 3)
        return Outcome(prediction, batched.batch_size)

    def _serve_one(self, data: bytes, heatmap: bool, t_start: float) -> Outcome:
        """Batching off: the whole path of one request in one CPU-pool call (blocking)."""
        prepared = self.prepare(data)
        scored = self.run_batch([prepared])[0]
        self.metrics.batch_size.labels(self.metrics.service, "chest").observe(1)
        _note_model_times(prepared, scored, 0.0)
        try:
            prediction = self.finish(prepared, scored, heatmap)
        finally:
            self._observe(prepared, t_start)
        prediction.timings_ms["total"] = round(prepared.timings.ms["total"], 3)
        return Outcome(prediction, 1)

    def _observe(self, prepared: Prepared, t_start: float) -> None:
        timings = prepared.timings.ms
        timings["total"] = _ms(t_start)
        for stage, ms in timings.items():
            self.metrics.observe_stage(stage, ms)


def _note_model_times(prepared: Prepared, scored: Scored, wait_ms: float) -> None:
    timings = prepared.timings.ms
    timings["batch_wait"] = wait_ms
    timings["gate"] = scored.gate_ms
    if scored.passed and prepared.chest is not None:
        timings["inference"] = scored.inference_ms


def _orientation(decision: Decision | None) -> Orientation | None:
    if decision is None:
        return None
    return Orientation(
        rotation_applied_deg=decision.rotation_applied_deg,
        mirrored_suspected=decision.mirrored,
        confidence=decision.p_rotation,
    )


def _image(chest: Any) -> Any:
    return chest.image


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def unavailable(settings: Settings) -> ServiceUnavailable:
    return ServiceUnavailable(
        "The chest models are not loaded on this instance.",
        details={"models": [settings.gate_model, settings.abnormality_model]},
    )
