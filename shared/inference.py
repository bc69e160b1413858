"""The inference kit: what tb_service and bc_service build their models on.

An :class:`ImageModel` is a model definition in KServe's shape: it binds the ONNX models it runs
from the loaded :class:`~shared.model.ModelRepository` (each checked against its card: the
preprocessing the card records must be the pipeline the service builds), then serves
``preprocess -> predict -> postprocess`` with per-stage timings (:class:`StageTimings`), and
reports ``ready`` only once :meth:`ImageModel.warmup` has sent one synthetic upload per served
format (PNG, JPEG and DICOM) through the whole path: decoders, OpenCV, ONNX Runtime and the
overlay encoder pay their first-call costs at start-up, not on the first patient's image.

The worker pool is :class:`shared.concurrency.CpuPool`, and the bound on requests in flight is
:class:`shared.batching.Admission`: one of each per service.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shared.contracts.common import ModelRef
from shared.errors import IRMIError
from shared.imaging import DecodedImage, ImageLimits, decode_image, encode_dicom, encode_png
from shared.model import ModelRepository, OnnxModel, check_preprocessing
from shared.settings import ServiceSettings
from shared.transforms import Compose, StageTimings

log = logging.getLogger("irmi.inference")

InputT = TypeVar("InputT")
PreparedT = TypeVar("PreparedT")
ScoredT = TypeVar("ScoredT")
ResultT = TypeVar("ResultT")

WARMUP_FORMATS = ("png", "jpeg", "dicom")


def probability(value: Any, fallback: float = 0.0) -> float:
    """A model output as a probability in [0, 1]; ``fallback`` for NaN or infinity."""
    v = float(value)
    return float(min(1.0, max(0.0, v))) if np.isfinite(v) else fallback


def synthetic_texture(height: int = 768, width: int = 640) -> NDArray[np.uint8]:
    """A smooth 8-bit gray pattern: an image no model is sure about, good for warming up."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture: NDArray[np.uint8] = (127 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.uint8)
    return texture


def encode_upload(pixels: NDArray[np.uint8], fmt: str, modality: str = "OT") -> bytes:
    """``pixels`` (8-bit gray) as the bytes of a PNG, JPEG or DICOM upload."""
    if fmt == "png":
        return encode_png(pixels)
    if fmt == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        return buf.getvalue()
    if fmt != "dicom":
        raise ValueError(f"unknown upload format {fmt!r}")
    return encode_dicom(pixels, modality=modality)


def model_repository(settings: ServiceSettings, root: Path, required: list[str]) -> ModelRepository:
    """The service's model repository under ``root``, with its ONNX Runtime settings."""
    return ModelRepository(
        root,
        required=required,
        use_gpu=settings.use_gpu,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
        allow_spinning=settings.onnx_allow_spinning,
    )


class ImageModel(ABC, Generic[InputT, PreparedT, ScoredT, ResultT]):
    """One servable model definition: bound ONNX models, the served path, warm-up, readiness.

    Subclasses bind their models in ``__init__`` (:meth:`bind`), implement the three stages
    (blocking: the service runs them on its CPU pool), and say how a decoded upload becomes
    their input (:meth:`warmup_input`).
    """

    #: Modality written into the warm-up DICOM (a service may refuse other modalities).
    warmup_modality = "OT"

    def __init__(
        self, repository: ModelRepository, limits: ImageLimits, *, strict_preprocessing: bool
    ) -> None:
        self.repository = repository
        self.limits = limits
        self.strict_preprocessing = strict_preprocessing
        self.used: list[OnnxModel] = []
        self.warmed = False
        self.warmup_ms: dict[str, float] = {}

    # ------------------------------------------------------------------ models

    def bind(self, name: str, pipeline: Compose[Any] | None) -> OnnxModel | None:
        """The loaded model ``name`` (None when the repository has none), refused with
        :class:`~shared.model.PreprocessingMismatch` when its card records other preprocessing
        than ``pipeline``."""
        model = self.repository.models.get(name)
        if model is None:
            return None
        if self.strict_preprocessing and pipeline is not None:
            check_preprocessing(model.card, pipeline)
        self.used.append(model)
        return model

    def model_refs(self) -> list[ModelRef]:
        return [m.card.ref() for m in self.used]

    # ------------------------------------------------------------------ the served path

    def decode(self, data: bytes, timings: StageTimings) -> DecodedImage:
        with timings.stage("decode"):
            return decode_image(data, self.limits)

    @abstractmethod
    def preprocess(self, request: InputT, timings: StageTimings) -> PreparedT: ...

    @abstractmethod
    def predict(self, prepared: PreparedT, timings: StageTimings) -> ScoredT: ...

    @abstractmethod
    def postprocess(
        self, prepared: PreparedT, scored: ScoredT, timings: StageTimings
    ) -> ResultT: ...

    def infer(self, request: InputT, timings: StageTimings | None = None) -> ResultT:
        """The whole path for one request, blocking."""
        timings = timings if timings is not None else StageTimings()
        prepared = self.preprocess(request, timings)
        scored = self.predict(prepared, timings)
        return self.postprocess(prepared, scored, timings)

    # ------------------------------------------------------------------ warm-up

    @abstractmethod
    def warmup_input(self, image: DecodedImage) -> InputT:
        """The request a decoded warm-up upload makes."""

    def warmup_pixels(self) -> NDArray[np.uint8]:
        return synthetic_texture()

    def warm(self, request: InputT) -> None:
        """One request through every stage. A refusal (a synthetic image is no film) ends it
        early; a subclass whose gate would refuse overrides this to go on past the gate."""
        self.infer(request)

    def warmup(self) -> None:
        """One synthetic upload per served format through decode and the whole path."""
        pixels = self.warmup_pixels()
        for fmt in WARMUP_FORMATS:
            t0 = time.perf_counter()
            try:
                data = encode_upload(pixels, fmt, self.warmup_modality)
                self.warm(self.warmup_input(self.decode(data, StageTimings())))
            except IRMIError as exc:
                log.info("warm-up upload refused", extra={"format": fmt, "code": exc.code})
            self.warmup_ms[fmt] = round((time.perf_counter() - t0) * 1000.0, 1)
        self.warmed = True
        log.info("warmed up", extra={"model": type(self).__name__, "ms": self.warmup_ms})

    @property
    def ready(self) -> bool:
        return self.warmed
