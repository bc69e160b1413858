"""The ``data`` of the gateway's server-sent events, as typed models: published in the OpenAPI
document (``x-sse-events`` of the stream routes, :func:`shared.openapi.sse_response`) so that
generated clients have their types. The writers (:mod:`gateway.study_writes`,
:mod:`gateway.studies`) emit these shapes; tests/gateway/test_event_schemas.py reads real
streams against them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.schemas import ChestResult, ConsultationPublic, ExamResultPublic
from shared.contracts.mammo import ProgressEvent
from shared.errors import ErrorBody


class StudyRetryEvent(BaseModel):
    """`retry`: the exam was lost mid-run (or re-run on request) and is submitted again;
    progress starts over."""

    study_id: str
    attempt: int = Field(ge=1)
    max_attempts: int | None = Field(default=None, description="None for a re-run on request.")
    code: str = Field(description="Why: an error code, or `rerun`.")
    reason: str
    window_s: float | None = Field(default=None, description="How long the relay keeps trying.")


class StudyResultEvent(BaseModel):
    """`result`: the study succeeded; exactly one of the results is set (by its kind)."""

    study_id: str
    status: Literal["succeeded"]
    chest_result: ChestResult | None = None
    mammography_result: ExamResultPublic | None = None


class StudyErrorEvent(BaseModel):
    """`error`: the study failed (terminal)."""

    study_id: str
    error: ErrorBody


STUDY_EVENTS: dict[str, type[BaseModel]] = {
    "progress": ProgressEvent,
    "retry": StudyRetryEvent,
    "result": StudyResultEvent,
    "error": StudyErrorEvent,
}
CONSULTATION_EVENTS: dict[str, type[BaseModel]] = {"consultation": ConsultationPublic}
