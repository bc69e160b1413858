"""HTTP routes of bc_service: exams (202 + status + SSE, or SSE in the submitting request),
cancellation, and the synchronous one-view prediction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from bc_service.exams import ExamManager, add_decode_time
from bc_service.jobs import ExamJob
from bc_service.pipeline import ViewInput
from bc_service.settings import Settings
from bc_service.uploads import DecodedView, decode_views, exam_views, multipart_schema, single_view
from shared.contracts.mammo import Exam, ExamAccepted, ProgressEvent, ViewResult, ViewTag
from shared.errors import (
    BadRequest,
    ErrorEnvelope,
    ImageTooLarge,
    InvalidImage,
    InvalidView,
    IRMIError,
    NotAMammogram,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ProcessingFailed,
    ServiceUnavailable,
    UnsupportedFormat,
    error_responses,
)
from shared.imaging import DecodedImage
from shared.openapi import SSE_MEDIA, sse_response
from shared.service import ServiceContext

EXCHANGE_DOC = """
**Exchange with the gateway (several replicas, plain round-robin, no sticky sessions).**
An exam lives in the memory of the replica that accepted it. The caller therefore asks for the
event stream *in the same request that submits the exam*: `POST /v1/exams?stream=true` (or
`Accept: text/event-stream`) answers `200 text/event-stream` at once; its first event
(`accepted`, id 1) carries the exam id and URLs, then `progress` events, an `error` event on
failure, and exactly one `result` event (the `Exam`, as `GET /v1/exams/{id}` returns it) last.
The stream closes after `result`. Without `stream`, the answer is `202 ExamAccepted` and the
events are at `events_url` (fine with one replica, or when `IRMI_BC_ADVERTISE_URL` makes the
URLs point straight at the replica that holds the exam). A client that disconnects changes
nothing for the job; it may resume at `events_url` with `Last-Event-ID` (replay of what it
missed) while the exam is kept (`IRMI_BC_EXAM_TTL_SECONDS` after it finished). Any other
replica answers 404 `not_found` for that exam.
"""

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: sse_response(
        "Server-sent events: `accepted`, `progress`, `error` on failure, then `result` "
        "(the `Exam`, exactly once, last). Ids increase by 1 from 1; comment lines are "
        "heartbeats.",
        {
            "accepted": ExamAccepted,
            "progress": ProgressEvent,
            "error": ErrorEnvelope,
            "result": Exam,
        },
    )
}


async def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def get_manager(request: Request) -> ExamManager:
    manager: ExamManager | None = request.app.state.ctx.extras.get("exams")
    if manager is None:
        raise ServiceUnavailable("The mammography pipeline is not loaded yet.")
    return manager


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.ctx.settings
    return settings


CtxDep = Annotated[ServiceContext, Depends(get_ctx)]
ManagerDep = Annotated[ExamManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter(tags=["mammography"])
# What decoding and admitting the views of a request may answer (submit and predict alike).
_VIEW_ERRORS = (
    BadRequest,
    InvalidView,
    InvalidImage,
    NotAMammogram,
    UnsupportedFormat,
    ImageTooLarge,
    PayloadTooLarge,
    Overloaded,
)


def _wants_stream(request: Request, stream: bool) -> bool:
    return stream or SSE_MEDIA in request.headers.get("accept", "").lower()


def _parse_last_event_id(header: str | None, query: int | None) -> int:
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        raise BadRequest(
            "Last-Event-ID must be an event id this service sent (an integer)."
        ) from None
    return max(0, value)


def event_stream(job: ExamJob, after: int, settings: Settings) -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        async for ev in job.follow(after):
            yield ServerSentEvent(data=ev.data, event=ev.event, id=str(ev.id))

    status_url, _ = exam_urls(job.id, settings)
    return EventSourceResponse(
        events(),
        ping=settings.heartbeat_seconds,
        send_timeout=30,  # a reader that stops reading is dropped; the job is not affected
        headers={"X-Exam-ID": job.id, "Content-Location": status_url},
    )


def exam_urls(exam_id: str, settings: Settings) -> tuple[str, str]:
    base = settings.advertise_url.rstrip("/")
    return f"{base}/v1/exams/{exam_id}", f"{base}/v1/exams/{exam_id}/events"


def _job(manager: ExamManager, exam_id: str) -> ExamJob:
    job = manager.get(exam_id)
    if job is None:
        raise NotFound(
            "No such exam on this replica (unknown, or evicted after its TTL).",
            details={"exam_id": exam_id[:64]},
        )
    return job


async def screen_views(
    manager: ExamManager, ctx: ServiceContext, decoded: list[DecodedView], views: list[ViewInput]
) -> None:
    """Refuse, before the exam is accepted, a view the pipeline's first stages refuse (not a
    mammogram: modality, blank, the gate model, no breast found); the error names the view."""
    for d, view in zip(decoded, views, strict=True):
        try:
            await ctx.cpu.run(manager.pipeline.screen, view)
        except IRMIError as exc:
            exc.details.setdefault("view", d.view_id)
            raise


def make_view_input(view_id: str, image: DecodedImage, tag: ViewTag | None) -> ViewInput:
    return ViewInput(view_id=view_id, image=image, tag=tag)


@router.post(
    "/v1/exams",
    operation_id="submitExam",
    status_code=202,
    response_model=ExamAccepted,
    summary="Submit an exam (1-4 views); optionally stream its events in the same request",
    description=(
        "Decodes every view and runs the pipeline's first stages on it (DICOM modality, blank "
        "image, the mammogram gate model, breast found) before accepting, so a bad file or one "
        "that is not a mammogram is refused at once (4xx, `not_a_mammogram`). Then the "
        "exam waits for a worker; when every worker and queue place is taken → 503 "
        "`overloaded` with Retry-After.\n" + EXCHANGE_DOC
    ),
    responses={
        **SSE_RESPONSE,
        **error_responses(*_VIEW_ERRORS),
    },
    openapi_extra=multipart_schema(4),
)
async def submit_exam(
    request: Request,
    ctx: CtxDep,
    manager: ManagerDep,
    settings: SettingsDep,
    stream: Annotated[
        bool,
        Query(description="Answer with the SSE stream of the exam instead of 202 (see above)."),
    ] = False,
) -> Any:
    started = time.monotonic()
    admission = manager.reserve()  # 503 before reading and decoding the body
    try:
        async with exam_views(request, settings, ctx.uploads) as raws:
            decoded = await decode_views(raws, settings, ctx.cpu)
        views = [make_view_input(d.view_id, d.image, d.tag) for d in decoded]
        await screen_views(manager, ctx, decoded, views)
        decode_ms = {d.view_id: d.decode_ms for d in decoded}
        job = manager.submit(views, decode_ms, started, admission=admission)
    finally:
        admission.release()  # no-op once the job holds it
    if _wants_stream(request, stream):
        return event_stream(job, 0, settings)
    status_url, events_url = exam_urls(job.id, settings)
    body = ExamAccepted(id=job.id, status=job.status, status_url=status_url, events_url=events_url)
    headers = {"Location": status_url, "X-Exam-ID": job.id}
    return JSONResponse(body.model_dump(), status_code=202, headers=headers)


@router.get(
    "/v1/exams/{exam_id}",
    operation_id="getExam",
    response_model=Exam,
    summary="Status and, once finished, the result of an exam",
    responses=error_responses(NotFound),
)
async def get_exam(exam_id: str, manager: ManagerDep) -> Any:
    job = _job(manager, exam_id)
    if job.final_json is not None:  # byte for byte the `result` event's data
        return Response(job.final_json, media_type="application/json")
    return job.snapshot()


@router.delete(
    "/v1/exams/{exam_id}",
    operation_id="deleteExam",
    response_model=Exam,
    summary="Cancel a queued or running exam; forget a finished one",
    description=(
        "An active exam turns `cancelled` at once (a running pipeline stops at its next stage "
        "boundary) and its stream ends with the `result` event (status `cancelled`). A "
        "finished exam is dropped from memory (its final state is returned)."
    ),
    responses=error_responses(NotFound),
)
async def delete_exam(exam_id: str, manager: ManagerDep) -> Exam:
    job = _job(manager, exam_id)
    if job.terminal:
        manager.forget(job)
    else:
        manager.cancel(job)
    return job.snapshot()


@router.get(
    "/v1/exams/{exam_id}/events",
    operation_id="streamExamEvents",
    summary="Server-sent events of an exam, resumable with Last-Event-ID",
    description=(
        "Replays the exam's event log after `Last-Event-ID` (header, or the `last_event_id` "
        "query parameter), then follows it live until the `result` event.\n" + EXCHANGE_DOC
    ),
    response_class=EventSourceResponse,
    responses={**SSE_RESPONSE, **error_responses(NotFound, BadRequest)},
)
async def exam_events(
    exam_id: str,
    manager: ManagerDep,
    settings: SettingsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="Same as the Last-Event-ID header.")
    ] = None,
) -> EventSourceResponse:
    job = _job(manager, exam_id)
    after = _parse_last_event_id(last_event_id_header, last_event_id)
    return event_stream(job, after, settings)


@router.post(
    "/v1/predict",
    operation_id="predictMammogramView",
    response_model=ViewResult,
    summary="One view, synchronous",
    description=(
        "Multipart: the image in `file`, optionally its tag in the text field `view` "
        "(`L-CC`, `R-CC`, `L-MLO`, `R-MLO`; detected when absent). A file that is not a "
        "mammogram (DICOM modality, blank image, the mammogram gate model, no breast found) is "
        "refused with 422 `not_a_mammogram` before it waits for a worker."
    ),
    responses=error_responses(*_VIEW_ERRORS, ProcessingFailed),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "view": {
                                "type": "string",
                                "enum": ["L-CC", "R-CC", "L-MLO", "R-MLO"],
                            },
                        },
                    }
                }
            },
        }
    },
)
async def predict(
    request: Request, ctx: CtxDep, manager: ManagerDep, settings: SettingsDep
) -> ViewResult:
    admission = manager.reserve()
    try:
        async with single_view(request, settings, ctx.uploads) as raw:
            (decoded,) = await decode_views([raw], settings, ctx.cpu)
        view = make_view_input(decoded.view_id, decoded.image, decoded.tag)
        # As for exams: a file that is not a mammogram is refused before it waits for a worker.
        await screen_views(manager, ctx, [decoded], [view])
        result = await manager.predict(view, admission=admission)
    finally:
        admission.release()
    add_decode_time(result, decoded.decode_ms)
    return result
