"""Studies: upload (chest: synchronous result; mammography: 202 + events), history, detail,
original images, heatmaps, the SSE event stream, re-run and delete. The writes go through
:mod:`gateway.study_writes`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select
from sse_starlette import EventSourceResponse

from gateway.deps import (
    SessionDep,
    ShortSessionDep,
    StateDep,
    StreamPrincipal,
    StudiesPrincipal,
    audit,
    check_scope,
)
from gateway.event_schemas import STUDY_EVENTS
from gateway.feeds import StudyFeed
from gateway.form_uploads import InMemoryFormRoute
from gateway.models import Study, StudyFile, User
from gateway.relay import start_relay
from gateway.routes.common import LIST_ERRORS, READ_ERRORS, LastEventId, Offset, resume_from
from gateway.routes.uploads import (
    UPLOAD_ERRORS,
    ChestFile,
    MammogramUpload,
    open_exam,
    predict_chest_upload,
)
from gateway.schemas import (
    StudyAccepted,
    StudyDetail,
    StudyPage,
)
from gateway.sharing import shared_study_ids
from gateway.studies import (
    delete_study,
    detail,
    expire_if_stale,
    load_readable,
    study_url,
    summary,
    thumbnails,
)
from gateway.study_writes import (
    create_chest,
    create_mammography,
    rerun,
    run_events,
)
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidView,
    NotAChestXray,
    NotAMammogram,
    NotFound,
    Overloaded,
    ProcessingFailed,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    error_responses,
)
from shared.openapi import binary_response, sse_response

router = APIRouter(prefix="/v1/studies", tags=["studies"], route_class=InMemoryFormRoute)

CHEST_ERRORS = error_responses(
    *UPLOAD_ERRORS, NotAChestXray, ValidationFailed, ServiceUnavailable, ProcessingFailed
)
MAMMO_ERRORS = error_responses(
    *UPLOAD_ERRORS, InvalidView, NotAMammogram, ValidationFailed, ServiceUnavailable
)
_NO_STORE = {"Cache-Control": "private, no-store"}


def _require_patient(principal: Any) -> None:
    if principal.user.role != "patient":
        raise Forbidden("Only patients upload studies.", details={"required_role": "patient"})


@router.post(
    "/chest",
    operation_id="uploadChestStudy",
    response_model=StudyDetail,
    status_code=201,
    summary="Upload a chest X-ray: the study and its result",
    responses=CHEST_ERRORS,
)
async def upload_chest(
    principal: StudiesPrincipal,
    state: StateDep,
    session: SessionDep,
    file: ChestFile,
) -> StudyDetail:
    _require_patient(principal)
    image, _, prediction = await predict_chest_upload(state, file)
    study, files = await create_chest(state, session, principal, image, prediction)
    return detail(study, files)


def _accepted(study_id: str, events_after: int = 0) -> Response:
    events = f"{study_url(study_id)}/events" + (f"?after={events_after}" if events_after else "")
    body = StudyAccepted(
        id=study_id, status="queued", study_url=study_url(study_id), events_url=events
    )
    return Response(
        body.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": study_url(study_id)},
    )


@router.post(
    "/mammography",
    operation_id="uploadMammographyStudy",
    response_model=StudyAccepted,
    status_code=202,
    summary="Upload 1-4 mammogram views: 202, then follow the events",
    description="Send each view as a part named by its tag (`L-CC`, `R-CC`, `L-MLO`, `R-MLO`), "
    "or untagged ones as repeated `files` parts (the service detects the view). The analysis "
    "runs in the background; progress and the result are stored as they arrive and served by "
    "`GET /v1/studies/{id}/events` (SSE) and `GET /v1/studies/{id}`.",
    responses=MAMMO_ERRORS,
)
async def upload_mammography(
    principal: StudiesPrincipal,
    state: StateDep,
    session: SessionDep,
    parts: MammogramUpload,
) -> Response:
    _require_patient(principal)
    images, resp = await open_exam(state, parts)
    try:
        study = await create_mammography(state, session, principal, images)
    except BaseException:
        await resp.aclose()
        raise
    start_relay(state, study.id, resp)
    return _accepted(study.id)


@router.post(
    "/{study_id}/rerun",
    operation_id="rerunStudy",
    response_model=StudyAccepted,
    status_code=202,
    summary="Run a failed mammography study again from its stored images",
    description="Only the patient who uploaded the study; 409 unless the study failed. The "
    "new run's events follow the `retry` event (reason `rerun`) that `events_url` starts "
    "after; if bc_service is down, the run waits for it (`exam_retry_window_s`).",
    responses=error_responses(Unauthorized, Forbidden, NotFound, Conflict),
)
async def rerun_study(
    study_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    study = await load_readable(session, principal, study_id)
    seq = await rerun(session, principal, study)
    start_relay(state, study.id, None)
    return _accepted(study.id, seq - 1)


@router.get(
    "",
    operation_id="listStudies",
    response_model=StudyPage,
    summary="History: my studies (patients) or the studies shared with me (doctors)",
    responses=LIST_ERRORS,
)
async def history(
    principal: StudiesPrincipal,
    session: SessionDep,
    kind: Literal["chest", "mammography"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
) -> StudyPage:
    user = principal.user
    query = select(Study)
    if user.role == "doctor":
        query = query.where(Study.id.in_(shared_study_ids(user)))
    else:
        query = query.where(Study.owner_id == user.id)
    if kind is not None:
        query = query.where(Study.kind == kind)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(
        query.order_by(Study.created_at.desc(), Study.id.desc()).limit(limit).offset(offset)
    )
    studies = list(rows.scalars())
    thumbs = await thumbnails(session, [s.id for s in studies])
    return StudyPage(
        items=[summary(s, thumbs.get(s.id)) for s in studies],
        total=int(total or 0),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{study_id}",
    operation_id="getStudy",
    response_model=StudyDetail,
    summary="A study with its system result",
    responses=READ_ERRORS,
)
async def get_study(
    study_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> StudyDetail:
    study = await load_readable(session, principal, study_id)
    await expire_if_stale(state, session, study)
    files = list(
        (await session.execute(select(StudyFile).where(StudyFile.study_id == study.id))).scalars()
    )
    out = detail(study, files)
    owner = await session.get(User, study.owner_id)
    out.patient_name = owner.full_name if owner else None
    run_start, _ = await run_events(session, study.id)
    if run_start and out.events_url:  # a re-run: its events start at its `retry` event
        out.events_url += f"?after={run_start - 1}"
    audit(session, principal, "read", study.id)
    await session.commit()
    return out


async def _file_response(
    state: StateDep, session: SessionDep, principal: Any, study_id: str, role: str, key: str
) -> Response:
    study = await load_readable(session, principal, study_id)
    column = StudyFile.id if role == "original" else StudyFile.name
    row = (
        await session.execute(
            select(StudyFile).where(
                StudyFile.study_id == study.id, StudyFile.role == role, column == key
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such file in this study.")
    data = await state.store.get(row.blob_key)
    audit(session, principal, "read_image" if role == "original" else "read_heatmap", study.id)
    await session.commit()
    headers = dict(_NO_STORE)
    if role == "original":  # the file as uploaded is a download; the UI shows /display
        ext = {"image/png": "png", "image/jpeg": "jpg", "application/dicom": "dcm"}.get(
            row.media_type, "bin"
        )
        headers["Content-Disposition"] = f'attachment; filename="study-{study.id}-{row.name}.{ext}"'
    return Response(data, media_type=row.media_type, headers=headers)


@router.get(
    "/{study_id}/images/{image_id}",
    operation_id="getStudyImage",
    summary="Download an original image of the study (as uploaded; show `/display` instead)",
    response_class=Response,
    responses={
        200: binary_response(
            "The file as uploaded.", "image/png", "image/jpeg", "application/dicom"
        ),
        **READ_ERRORS,
    },
)
async def get_image(
    study_id: str, image_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    return await _file_response(state, session, principal, study_id, "original", image_id)


@router.get(
    "/{study_id}/heatmaps/{name}",
    operation_id="getStudyHeatmap",
    summary="A heatmap PNG (RGBA, the size of the original; draw it over the image)",
    response_class=Response,
    responses={200: binary_response("RGBA PNG.", "image/png"), **READ_ERRORS},
)
async def get_heatmap(
    study_id: str, name: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    return await _file_response(state, session, principal, study_id, "heatmap", name)


@router.get(
    "/{study_id}/events",
    operation_id="streamStudyEvents",
    summary="Server-sent events of a study: progress, then one result or error",
    response_class=EventSourceResponse,
    responses={
        200: sse_response(
            "`progress`, then one `result` or `error`; `retry` when the exam was lost mid-run "
            "and is submitted again (progress starts over). Each event has an `id`; reconnect "
            "with `Last-Event-ID` to resume. The stream ends after `result` or `error`, and "
            "when the caller's session is revoked or its access token expires (reconnect "
            "with a fresh token).",
            STUDY_EVENTS,
        ),
        **error_responses(Unauthorized, Forbidden, NotFound, Overloaded),
    },
)
async def study_events(
    study_id: str,
    stream_principal: StreamPrincipal,
    state: StateDep,
    session: ShortSessionDep,
    last_event_id: LastEventId = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this event id.")] = None,
) -> EventSourceResponse:
    principal = check_scope(stream_principal, "studies")
    study = await load_readable(session, principal, study_id)
    audit(session, principal, "read_events", study.id)
    await session.commit()
    start = resume_from(last_event_id, after or 0)
    sub = state.streams.open(principal)
    state.streams.feed("studies", lambda: StudyFeed(state)).follow(sub, study.id, start)
    return state.streams.response(sub, retry_ms=2000)


@router.delete(
    "/{study_id}",
    operation_id="deleteStudy",
    status_code=204,
    summary="Delete a study: its images, heatmaps, results and events (consultations stay)",
    responses=READ_ERRORS,
)
async def remove_study(
    study_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    study = await load_readable(session, principal, study_id)
    if study.owner_id != principal.user.id:
        raise Forbidden("Only the patient who uploaded a study may delete it.")
    audit(session, principal, "delete", study.id)
    await delete_study(state, session, study)
    return Response(status_code=204)
