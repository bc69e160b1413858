"""HTTP routes of tb_service: /v1/predict, /v1/predict/batch and the legacy /api/tb."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from shared.contracts.chest import (
    ChestBatchItem,
    ChestBatchResponse,
    ChestPrediction,
    LegacyTbRequest,
    LegacyTbResponse,
)
from shared.errors import (
    BadRequest,
    ImageTooLarge,
    InvalidImage,
    IRMIError,
    NotAChestXray,
    Overloaded,
    PayloadTooLarge,
    ProcessingFailed,
    ServiceUnavailable,
    UnsupportedFormat,
    ValidationFailed,
    error_responses,
)
from shared.service import ServiceContext
from shared.uploads import FilePart, UploadErrors, UploadLimits
from tb_service.engine import ChestEngine, unavailable
from tb_service.settings import Settings

log = logging.getLogger("irmi.tb.routes")

BATCH_SIZE_HEADER = "X-IRMI-Batch-Size"

_GRID = [[0.0, 0.1, 0.2, 0.1, 0.0, 0.1, 0.3, 0.2]] * 3 + [[0.1, 0.4, 1.0, 0.6, 0.1, 0.2, 0.5, 0.3]]
PREDICTION_EXAMPLE: dict[str, Any] = {
    "validity": {"score": 0.998, "threshold": 0.5, "passed": True},
    "category": "review_recommended",
    "operating_point": {
        "source": "card",
        "score_threshold": 30.8589,
        "sensitivity": {"value": 0.9279, "ci95": [0.8994, 0.9543], "n": 333},
        "specificity": {"value": 0.8352, "ci95": [0.7823, 0.8889], "n": 182},
        "measured_on": "in-distribution test split of the training sources: ...",
        "model": {"name": "chest-abnormality", "version": "1", "sha256": "9a0b...42"},
        "run_id": None,
    },
    "label": "abnormal",
    "probabilities": {"normal": 0.19, "abnormal": 0.81},
    "score": 81.0,
    "threshold": 0.308589,
    "findings": [
        {
            "name": "pneumonia",
            "probability": 0.81,
            "subtypes": {"bacterial": 0.72, "viral": 0.28},
            "note": "The screen was trained with pneumonia as its abnormal class ...",
        }
    ],
    "score_map": {
        "values": _GRID * 2,
        "box": {"x0": 96, "y0": 120, "x1": 930, "y1": 900},
        "image_width": 1024,
        "image_height": 1024,
    },
    "heatmap": None,
    "crop_box": {"x0": 96, "y0": 120, "x1": 930, "y1": 900},
    "reliability": {
        "outside_population": False,
        "reasons": [],
        "distance": None,
        "limit_quantile": None,
    },
    "models": [
        {"name": "chest-gate", "version": "1", "sha256": "3f5c...e1"},
        {"name": "chest-abnormality", "version": "1", "sha256": "9a0b...42"},
    ],
    "timings_ms": {
        "decode": 9.1,
        "gate.to_gray_uint8": 0.4,
        "preprocess.clahe": 3.2,
        "batch_wait": 4.8,
        "gate": 2.1,
        "inference": 11.7,
        "total": 52.0,
    },
    "disclaimer": "Screening aid, not a diagnosis: a clinician must review this image.",
}

_IMAGE_ERRORS = (
    UnsupportedFormat,
    InvalidImage,
    NotAChestXray,
    ValidationFailed,
    ImageTooLarge,
    PayloadTooLarge,
    Overloaded,
    ServiceUnavailable,
)


def _ok(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": example}}}}


async def get_engine(request: Request) -> ChestEngine:
    ctx: ServiceContext = request.app.state.ctx
    engine = ctx.extras.get("chest")
    if not isinstance(engine, ChestEngine) or not engine.ready:
        assert isinstance(ctx.settings, Settings)
        raise unavailable(ctx.settings)
    return engine


async def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


EngineDep = Annotated[ChestEngine, Depends(get_engine)]
CtxDep = Annotated[ServiceContext, Depends(get_ctx)]
HeatmapQuery = Annotated[
    bool,
    Query(
        description="Deprecated (kept one release): also return the full-size `heatmap` PNG "
        "(base64, RGBA once decoded) when the service has it on. Render `score_map` instead.",
        deprecated=True,
    ),
]


def _not_multipart(ctype: str) -> IRMIError:
    return ValidationFailed(
        "Send the image(s) as multipart/form-data.", details={"content_type": ctype[:100]}
    )


UPLOAD_ERRORS = UploadErrors(not_multipart=_not_multipart)  # too many files: 413 as before


def upload_limits(settings: Settings, max_files: int) -> UploadLimits:
    """Per-file limit ``max_upload_bytes``: an oversized file is read to its end (the body limit
    bounds that) without being kept, and refused as ``image_too_large`` for itself alone."""
    return UploadLimits(
        max_file_bytes=settings.max_upload_bytes, max_files=max_files, oversize="mark"
    )


def image_bytes(part: FilePart, max_bytes: int) -> bytes:
    """The part's bytes, or 413 ``image_too_large`` for a file over the per-file limit."""
    if part.oversize:
        raise ImageTooLarge(
            f"The file exceeds {max_bytes} bytes.", details={"max_bytes": max_bytes}
        )
    return part.data


def multipart_body(field: str, description: str, *, many: bool) -> dict[str, Any]:
    """The multipart requestBody of a route that reads its files with shared.uploads."""
    binary: dict[str, Any] = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary} if many else binary
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    prop["description"] = description
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """Standard or URL-safe base64, optionally a ``data:`` URL, whitespace and padding lenient."""
    s = text.strip()
    if s.startswith("data:"):
        comma = s.find(",")
        if comma < 0:
            raise BadRequest(
                "The image field is a data URL without data.",
                details={"field": "image", "reason": "invalid_base64"},
            )
        s = s[comma + 1 :]
    s = "".join(s.split())
    if not s:
        raise InvalidImage("The image field is empty.", details={"reason": "empty"})
    if len(s) * 3 // 4 > max_bytes + 3:
        raise ImageTooLarge(
            f"The decoded image would exceed {max_bytes} bytes.",
            details={"max_bytes": max_bytes},
        )
    s += "=" * (-len(s) % 4)
    altchars = b"-_" if ("-" in s or "_" in s) else None
    try:
        return base64.b64decode(s, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "The image field is not valid base64.",
            details={"field": "image", "reason": "invalid_base64"},
        ) from None


def _error_item(exc: BaseException) -> dict[str, object]:
    if isinstance(exc, IRMIError):
        err: IRMIError = exc
    else:  # a bug, not the client's fault: log it (never the file) and answer 500 for this item
        log.error("batch item failed: %s", type(exc).__name__, exc_info=exc)
        err = ProcessingFailed("Processing failed unexpectedly.")
    body: dict[str, object] = err.envelope().error.model_dump()
    body["status"] = err.status_code
    return body


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["chest"])
    max_file = settings.max_upload_bytes
    one_file = upload_limits(settings, max_files=4)
    batch_files = upload_limits(settings, max_files=settings.max_batch_files)

    @router.post(
        "/v1/predict",
        operation_id="predictChest",
        response_model=ChestPrediction,
        summary="Screen one chest X-ray",
        description=(
            "Multipart field `file`: a PNG, JPEG or DICOM chest radiograph (format sniffed from "
            "the bytes). The validity gate runs first: anything that is not a chest X-ray gets "
            "422 `not_a_chest_xray` with the gate's score. The answer's `category` is read at "
            "the model card's `operating_point` (shared categorize: `outside_population` "
            "whenever `reliability.outside_population`); `score_map` is the low-resolution map "
            "of where the model looked, over `crop_box`, for the caller to render. The "
            "full-size `heatmap` PNG only comes with `heatmap=true` (deprecated). Requests "
            f"arriving together are batched; the `{BATCH_SIZE_HEADER}` response header says "
            "how many images shared this one's model run."
        ),
        responses={**_ok(PREDICTION_EXAMPLE), **error_responses(*_IMAGE_ERRORS)},
        openapi_extra=multipart_body("file", "PNG, JPEG or DICOM chest X-ray.", many=False),
    )
    async def predict(
        request: Request,
        engine: EngineDep,
        ctx: CtxDep,
        response: Response,
        heatmap: HeatmapQuery = False,
    ) -> ChestPrediction:
        async with ctx.uploads.multipart(request, one_file, UPLOAD_ERRORS) as upload:
            parts = upload.files("file")
            if len(parts) != 1:
                raise ValidationFailed(
                    "Send exactly one image in the multipart file field `file`.",
                    details={"field": "file", "files": len(parts)},
                )
            data = image_bytes(parts[0], max_file)
            outcome = await engine.serve(data, heatmap=heatmap)
        response.headers[BATCH_SIZE_HEADER] = str(outcome.batch_size)
        return outcome.prediction

    @router.post(
        "/v1/predict/batch",
        operation_id="predictChestBatch",
        response_model=ChestBatchResponse,
        summary="Screen several chest X-rays",
        description=(
            f"Multipart field `files`, repeated (at most {settings.max_batch_files}). The answer "
            "keeps the upload order: each item holds a `prediction` or, for a file that was "
            "refused, the error envelope's `error` object (with its HTTP `status`). Too many "
            "files → 413 `payload_too_large`."
        ),
        responses={
            **_ok(
                {
                    "results": [
                        {"filename": "a.png", "prediction": PREDICTION_EXAMPLE, "error": None},
                        {
                            "filename": "b.gif",
                            "prediction": None,
                            "error": {
                                "code": "unsupported_format",
                                "message": "Only PNG, JPEG or DICOM images are accepted.",
                                "details": {"detected": "gif"},
                                "status": 415,
                            },
                        },
                    ]
                },
            ),
            **error_responses(PayloadTooLarge, ValidationFailed, ServiceUnavailable),
        },
        openapi_extra=multipart_body("files", "Chest X-rays (PNG/JPEG/DICOM).", many=True),
    )
    async def predict_batch(
        request: Request,
        engine: EngineDep,
        ctx: CtxDep,
        heatmap: HeatmapQuery = False,
    ) -> ChestBatchResponse:
        async def one(file: FilePart) -> ChestBatchItem:
            try:
                data = image_bytes(file, max_file)
                outcome = await engine.serve(data, heatmap=heatmap)
            except Exception as exc:
                return ChestBatchItem(filename=file.filename, error=_error_item(exc))
            return ChestBatchItem(filename=file.filename, prediction=outcome.prediction)

        async with ctx.uploads.multipart(request, batch_files, UPLOAD_ERRORS) as upload:
            files = upload.files("files")
            if not files:
                raise ValidationFailed(
                    "Send the images in the repeated multipart file field `files`.",
                    details={"field": "files"},
                )
            results = await asyncio.gather(*(one(f) for f in files))
        return ChestBatchResponse(results=list(results))

    @router.post(
        "/api/tb",
        operation_id="predictTbLegacy",
        response_model=LegacyTbResponse,
        tags=["legacy"],
        summary="Legacy endpoint of the original report",
        description=(
            'JSON `{"image": "<base64 of a PNG, JPEG or DICOM file>"}` (a `data:` URL works '
            'too) → `{"prediction": {"abnormal": p, "normal": p}}`. Kept for old clients; new '
            "clients use `/v1/predict`. Invalid base64 → 400 `bad_request`."
        ),
        responses={
            **_ok({"prediction": {"abnormal": 0.81, "normal": 0.19}}),
            **error_responses(BadRequest, *_IMAGE_ERRORS),
        },
    )
    async def legacy_tb(engine: EngineDep, body: LegacyTbRequest) -> LegacyTbResponse:
        data = decode_base64_image(body.image, max_file)
        outcome = await engine.serve(data, heatmap=False)
        p = outcome.prediction.probabilities
        return LegacyTbResponse(prediction={"abnormal": p["abnormal"], "normal": p["normal"]})

    return router


def body_limits(settings: Settings) -> dict[str, int]:
    """Whole-body limits per route, enforced while the body streams in."""
    overhead = 1024 * 1024  # multipart headers, JSON quoting
    return {
        "/v1/predict": settings.max_upload_bytes + overhead,
        "/v1/predict/batch": settings.max_batch_bytes + overhead,
        "/api/tb": (settings.max_upload_bytes * 4) // 3 + overhead,
    }
