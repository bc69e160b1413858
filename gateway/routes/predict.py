"""Stateless predict routes for integrators: nothing is stored; where the model looked comes
back as each result's low-resolution `score_map` to render; the services receive
de-identified copies (:mod:`gateway.deidentify`)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import PredictPrincipal, SessionDep, StateDep
from gateway.form_uploads import InMemoryFormRoute
from gateway.mammo_point import effective_exam
from gateway.operating_point import EffectiveReading, effective_reading
from gateway.relay import error_of
from gateway.routes.uploads import (
    UPLOAD_ERRORS,
    ChestFile,
    MammogramUpload,
    open_exam,
    predict_chest_upload,
)
from gateway.state import GatewayState
from gateway.upstream import UpstreamError, iter_sse, status_for_code
from shared.contracts.chest import ChestPrediction
from shared.contracts.mammo import Exam
from shared.contracts.screening import Category
from shared.errors import (
    InvalidView,
    NotAChestXray,
    NotAMammogram,
    ProcessingFailed,
    ServiceUnavailable,
    ValidationFailed,
    error_responses,
)


class IntegratorChestPrediction(ChestPrediction):
    """A chest prediction read at the effective operating point (the site's, else the card's)."""

    effective: EffectiveReading = Field(
        description="The reading as studies store it: the point, its basis, the site's "
        "recalibrated probability, and why a site point was not used (`site_note`)."
    )


async def integrator_reading(
    state: GatewayState, prediction: ChestPrediction, session: AsyncSession
) -> IntegratorChestPrediction:
    """``prediction`` read through :func:`gateway.operating_point.effective_reading`."""
    reading = await effective_reading(state, prediction, session)
    point = reading.operating_point or prediction.operating_point
    reliability = reading.reliability or prediction.reliability
    findings = prediction.findings if reading.category == Category.review_recommended else []
    # The validated fields as they are, not dumped and validated again.
    return IntegratorChestPrediction.model_validate(
        {
            **dict(prediction),
            "category": reading.category,
            "operating_point": point,
            "reliability": reliability,
            "findings": findings,
            "effective": reading,
        }
    )


router = APIRouter(prefix="/v1/predict", tags=["predict"], route_class=InMemoryFormRoute)
_COMMON = (*UPLOAD_ERRORS, ValidationFailed, ServiceUnavailable, ProcessingFailed)


@router.post(
    "/chest",
    operation_id="predictChest",
    response_model=IntegratorChestPrediction,
    summary="Chest X-ray prediction (stateless; API key scope `predict`)",
    description="tb_service's prediction read at the effective operating point: the site's, "
    "once an admin adopted one from a validation run for this very model, else the model "
    "card's. `category`, `operating_point` and `reliability` are those it was read with "
    "(`operating_point.source` says whose); `effective` carries the same reading as studies "
    "store it (`calibrated_score`, `site_note`); `score_map` (where the model looked, over "
    "`crop_box`) to render.",
    responses=error_responses(*_COMMON, NotAChestXray),
)
async def predict_chest(
    _: PredictPrincipal,
    state: StateDep,
    session: SessionDep,
    file: ChestFile,
) -> Any:
    _image, _body, prediction = await predict_chest_upload(state, file)
    return await integrator_reading(state, prediction, session)


@router.post(
    "/mammogram",
    operation_id="predictMammogram",
    response_model=Exam,
    summary="Mammography exam, synchronous (stateless; API key scope `predict`)",
    description="Same parts as `POST /v1/studies/mammography`; waits for the result: per "
    "view, breast and exam a suspicion `score` and its `category` at `score_threshold`, and per "
    "view its `score_map` over `crop_box` (render it yourself); read at the site's operating "
    "point where an admin adopted one for this model and reading, as studies are. A file that "
    "is not a "
    "mammogram is refused with 422 `not_a_mammogram` before any work is queued.",
    responses=error_responses(*_COMMON, InvalidView, NotAMammogram),
)
async def predict_mammogram(
    _: PredictPrincipal,
    state: StateDep,
    session: SessionDep,
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
                assert exam.result is not None
                return exam.model_copy(
                    update={"result": await effective_exam(state, exam.result, session)}
                )
            if ev.event == "error":
                code, message, details = error_of(ev.json())
                raise UpstreamError(status_for_code(code), code, message, details)
    except httpx.HTTPError as exc:
        raise state.upstreams.unavailable("bc_service", exc) from exc
    finally:
        await resp.aclose()
    raise state.upstreams.unavailable("bc_service", RuntimeError("stream ended"))
