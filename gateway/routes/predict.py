"""Stateless predict routes for integrators: nothing is stored; where the model looked comes
back as each result's low-resolution `score_map` to render; the services receive
de-identified copies (:mod:`gateway.deidentify`)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Response

from gateway.deps import PredictPrincipal, StateDep
from gateway.relay import error_of
from gateway.routes.uploads import (
    UPLOAD_ERRORS,
    ChestFile,
    MammogramUpload,
    open_exam,
    predict_chest_upload,
)
from gateway.upstream import UpstreamError, iter_sse, status_for_code
from shared.contracts.chest import ChestPrediction
from shared.contracts.mammo import Exam
from shared.errors import (
    InvalidView,
    NotAChestXray,
    NotAMammogram,
    ProcessingFailed,
    ServiceUnavailable,
    ValidationFailed,
    error_responses,
)

router = APIRouter(prefix="/v1/predict", tags=["predict"])
_COMMON = (*UPLOAD_ERRORS, ValidationFailed, ServiceUnavailable, ProcessingFailed)


@router.post(
    "/chest",
    operation_id="predictChest",
    response_model=ChestPrediction,
    summary="Chest X-ray prediction (stateless; API key scope `predict`)",
    description="tb_service's prediction as it returns it: `category` at the model card's "
    "`operating_point` (studies store the reading at the effective point as well), "
    "`reliability`, and `score_map` (where the model looked, over `crop_box`) to render.",
    responses=error_responses(*_COMMON, NotAChestXray),
)
async def predict_chest(
    _: PredictPrincipal,
    state: StateDep,
    file: ChestFile,
) -> Any:
    _image, body, _prediction = await predict_chest_upload(state, file)  # the contract holds...
    return Response(body, media_type="application/json")  # ...and the bytes pass through


@router.post(
    "/mammogram",
    operation_id="predictMammogram",
    response_model=Exam,
    summary="Mammography exam, synchronous (stateless; API key scope `predict`)",
    description="Same parts as `POST /v1/studies/mammography`; waits for the result: per "
    "view, breast and exam a suspicion `score` and its `category` at `score_threshold`, and per "
    "view its `score_map` over `crop_box` (render it yourself). A file that is not a "
    "mammogram is refused with 422 `not_a_mammogram` before any work is queued.",
    responses=error_responses(*_COMMON, InvalidView, NotAMammogram),
)
async def predict_mammogram(
    _: PredictPrincipal,
    state: StateDep,
    parts: MammogramUpload,
) -> Any:
    _images, resp = await open_exam(state, parts)
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
