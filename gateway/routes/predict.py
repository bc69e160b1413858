"""Stateless predict routes for integrators: nothing is stored, heatmaps come back inline;
the services receive de-identified copies (:mod:`gateway.deidentify`)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, File, Response, UploadFile

from gateway.deps import PredictPrincipal, StateDep
from gateway.relay import error_of
from gateway.studies import mammogram_views
from gateway.study_writes import read_image, read_views
from gateway.upstream import UpstreamError, iter_sse, status_for_code
from shared.contracts.chest import ChestPrediction
from shared.contracts.mammo import Exam
from shared.errors import (
    Forbidden,
    ImageTooLarge,
    InvalidImage,
    InvalidView,
    NotAChestXray,
    NotAMammogram,
    PayloadTooLarge,
    ProcessingFailed,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedFormat,
    ValidationFailed,
    error_responses,
)

router = APIRouter(prefix="/v1/predict", tags=["predict"])
_COMMON = (
    Unauthorized,
    Forbidden,
    PayloadTooLarge,
    ImageTooLarge,
    UnsupportedFormat,
    InvalidImage,
    ValidationFailed,
    ServiceUnavailable,
    ProcessingFailed,
)


@router.post(
    "/chest",
    response_model=ChestPrediction,
    summary="Chest X-ray prediction (stateless; API key scope `predict`)",
    responses=error_responses(*_COMMON, NotAChestXray),
)
async def predict_chest(
    _: PredictPrincipal,
    state: StateDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG or DICOM chest X-ray.")],
) -> Any:
    image = await read_image(file, state.settings.max_upload_bytes, name="image")
    body = await state.upstreams.predict_chest("image", image.forward, image.media_type)
    try:
        ChestPrediction.model_validate_json(body)  # the contract holds...
    except ValueError as exc:
        raise ProcessingFailed("tb_service returned a malformed prediction.") from exc
    return Response(body, media_type="application/json")  # ...and the bytes pass through


@router.post(
    "/mammogram",
    response_model=Exam,
    summary="Mammography exam, synchronous (stateless; API key scope `predict`)",
    description="Same parts as `POST /v1/studies/mammography`; waits for the result.",
    responses=error_responses(*_COMMON, InvalidView, NotAMammogram),
)
async def predict_mammogram(
    _: PredictPrincipal,
    state: StateDep,
    l_cc: Annotated[UploadFile | None, File(alias="L-CC")] = None,
    r_cc: Annotated[UploadFile | None, File(alias="R-CC")] = None,
    l_mlo: Annotated[UploadFile | None, File(alias="L-MLO")] = None,
    r_mlo: Annotated[UploadFile | None, File(alias="R-MLO")] = None,
    files: Annotated[list[UploadFile] | None, File(description="Untagged views.")] = None,
) -> Any:
    tagged = [("L-CC", l_cc), ("R-CC", r_cc), ("L-MLO", l_mlo), ("R-MLO", r_mlo)]
    views = mammogram_views(tagged, files, state.settings.max_views)
    images = await read_views(views, state.settings.max_upload_bytes)
    resp = await state.upstreams.open_exam_stream([img.part() for img in images])
    try:
        async for ev in iter_sse(resp):
            if ev.event == "result":
                exam = Exam.model_validate(ev.json())
                if exam.status != "succeeded":
                    code, message, details = error_of(exam.error or {})
                    raise UpstreamError(status_for_code(code), code, message, details)
                return exam
            if ev.event == "error":
                code, message, details = error_of(ev.json())
                raise UpstreamError(status_for_code(code), code, message, details)
    except httpx.HTTPError as exc:
        raise state.upstreams.unavailable("bc_service", exc) from exc
    finally:
        await resp.aclose()
    raise state.upstreams.unavailable("bc_service", RuntimeError("stream ended"))
