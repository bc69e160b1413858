"""The admin API of validation runs: create, upload, start, progress, reports, deletion (the
site points chosen from them: :mod:`gateway.validation.point_routes`). Administrators only
(logged in as a user; API keys are refused); every other caller gets 403 (401 without a
credential)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from gateway.deidentify import for_inference
from gateway.deps import SessionDep, StateDep, UserPrincipalDep, audit
from gateway.form_uploads import ValidationFormRoute
from gateway.routes.common import CHANGE_ERRORS, LIST_ERRORS, READ_ERRORS
from gateway.streams import PING_S, SEP, sse
from gateway.validation import intake
from gateway.validation.access import AdminDep, StreamAdminDep
from gateway.validation.csvout import scores_csv
from gateway.validation.pdf import report_pdf
from gateway.validation.report_schemas import ValidationReport
from gateway.validation.runner import RUN_BLOB, purge_images
from gateway.validation.schemas import (
    RunCreate,
    RunList,
    RunPublic,
    UploadAccepted,
)
from gateway.validation.tables import ValidationItem, ValidationRun
from shared.clock import now
from shared.errors import (
    BadRequest,
    Conflict,
    ErrorBody,
    Forbidden,
    IRMIError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedFormat,
    ValidationFailed,
    error_responses,
)
from shared.imaging import sniff_format
from shared.openapi import binary_response, sse_response

TAGS: list[str | Any] = ["validation"]
runs = APIRouter(prefix="/v1/admin/validation-runs", tags=TAGS, route_class=ValidationFormRoute)
UPLOAD_ERRORS = error_responses(
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    BadRequest,
    PayloadTooLarge,
    UnsupportedFormat,
    ValidationFailed,
)
MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}


async def _run(session: AsyncSession, run_id: str) -> ValidationRun:
    run = await session.get(ValidationRun, run_id)
    if run is None:
        raise NotFound("No such validation run.")
    return run


async def _items(session: AsyncSession, run_id: str) -> list[ValidationItem]:
    rows = await session.execute(
        select(ValidationItem)
        .where(ValidationItem.run_id == run_id)
        .order_by(ValidationItem.position)
    )
    return list(rows.scalars())


@runs.post(
    "",
    status_code=201,
    response_model=RunPublic,
    operation_id="createValidationRun",
    summary="Create a validation run for a modality and a target condition",
    responses=CHANGE_ERRORS,
)
async def create_run(
    body: RunCreate,
    admin: AdminDep,
    principal: UserPrincipalDep,
    state: StateDep,
    session: SessionDep,
) -> RunPublic:
    days = body.retention_days or state.settings.validation_retention_days
    run = ValidationRun(
        name=body.name.strip(),
        modality=body.modality,
        target=body.target,
        reference_standard=body.reference_standard,
        created_by=admin.id,
        retain_images_until=now() + timedelta(days=days),
    )
    session.add(run)
    await session.flush()
    audit(session, principal, "validation_run_create", None, details={"run_id": run.id})
    await session.commit()
    return RunPublic.of(run)


@runs.get(
    "",
    response_model=RunList,
    operation_id="listValidationRuns",
    summary="Validation runs, latest first",
    responses=LIST_ERRORS,
)
async def list_runs(_: AdminDep, session: SessionDep) -> RunList:
    rows = await session.execute(
        select(ValidationRun).order_by(ValidationRun.created_at.desc()).limit(200)
    )
    return RunList(items=[RunPublic.of(r) for r in rows.scalars()])


@runs.get(
    "/{run_id}",
    response_model=RunPublic,
    operation_id="getValidationRun",
    summary="A validation run and its progress",
    responses=READ_ERRORS,
)
async def get_run(run_id: str, _: AdminDep, session: SessionDep) -> RunPublic:
    return RunPublic.of(await _run(session, run_id))


async def _read(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"Each part may be at most {limit} bytes.", details={"max_bytes": limit}
        )
    return data


def _prepare(upload: intake.Upload) -> dict[str, tuple[bytes, str]]:
    """Each image sniffed and de-identified as it will be sent (blocking: off the loop)."""
    out: dict[str, tuple[bytes, str]] = {}
    rows = {name: u.row for u in upload.units for name in u.files}
    for name, data in upload.images.items():
        try:
            fmt = sniff_format(data)
        except IRMIError as exc:
            raise type(exc)(
                f"CSV row {rows[name]}: its image is not a readable PNG, JPEG or DICOM file.",
                details={"row": rows[name]},
            ) from None
        out[name] = (for_inference(data, MEDIA[fmt]), MEDIA[fmt])
    return out


@runs.post(
    "/{run_id}/uploads",
    status_code=201,
    response_model=UploadAccepted,
    operation_id="addValidationImages",
    summary="Add labelled images: a zip with labels.csv, or image files with a labels CSV",
    description="Multipart: `archive` (a zip holding the images, and `labels.csv` unless "
    "`labels` is sent), or `files` (DICOM, PNG or JPEG files) with `labels`. The CSV's header "
    "has `file` and `label` (1/0, yes/no, positive/negative, abnormal/normal); any other "
    "column is a subgroup (view, sex, age band, device); mammography may group the views of "
    "one breast with a `breast` column. A zip is bounded in entries and unpacked size; paths "
    "leaving the archive and links are refused. An upload is added whole or not at all.",
    responses=UPLOAD_ERRORS,
)
async def add_images(
    run_id: str,
    _: AdminDep,
    state: StateDep,
    session: SessionDep,
    archive: Annotated[UploadFile | None, File(description="A zip of images.")] = None,
    labels: Annotated[UploadFile | None, File(description="The labels CSV.")] = None,
    files: Annotated[list[UploadFile] | None, File(description="Image files.")] = None,
) -> UploadAccepted:
    run = await _run(session, run_id)
    if run.status not in ("open", "done", "failed") or run.images_deleted_at is not None:
        raise Conflict(
            "This run takes no more images (it is scoring, or its images were deleted).",
            details={"status": run.status},
        )
    s = state.settings
    limit = s.max_request_bytes
    zipped = await _read(archive, limit) if archive is not None else None
    csv_bytes = await _read(labels, s.max_json_bytes * 16) if labels is not None else None
    loose = {f.filename or f"file-{i}": await _read(f, limit) for i, f in enumerate(files or [])}
    upload = await asyncio.to_thread(
        intake.read_upload,
        modality=run.modality,
        archive=zipped,
        labels=csv_bytes,
        files=loose,
        max_entries=s.validation_max_zip_entries,
        max_unpacked=s.validation_max_unpacked_bytes,
        max_file=s.max_upload_bytes,
    )
    prepared = await asyncio.to_thread(_prepare, upload)
    keys = {name: await state.store.put(RUN_BLOB + data) for name, (data, _) in prepared.items()}
    start = run.total  # units are only ever added, in order
    for n, unit in enumerate(upload.units):
        session.add(
            ValidationItem(
                run_id=run.id,
                position=start + n,
                file_name=unit.files[0] if len(unit.files) == 1 else ";".join(unit.files),
                label=unit.label,
                subgroups=unit.subgroups,
                blobs=[{"key": keys[f], "media_type": prepared[f][1]} for f in unit.files],
            )
        )
    run.total += len(upload.units)
    run.status, run.updated_at = "open", now()
    await session.commit()
    return UploadAccepted(added=len(upload.units), images=len(prepared), total=run.total)


@runs.post(
    "/{run_id}/start",
    status_code=202,
    response_model=RunPublic,
    operation_id="startValidationRun",
    summary="Score the run's pending images in the background (low priority)",
    responses=CHANGE_ERRORS,
)
async def start_run(run_id: str, _: AdminDep, session: SessionDep) -> RunPublic:
    run = await _run(session, run_id)
    if run.status in ("queued", "running"):
        raise Conflict("The run is already scoring.", details={"status": run.status})
    if not run.total:
        raise Conflict("Add labelled images before starting the run.")
    run.status, run.updated_at, run.report = "queued", now(), None
    await session.commit()
    return RunPublic.of(run)


@runs.get(
    "/{run_id}/events",
    operation_id="streamValidationRun",
    summary="The run's progress as Server-Sent Events (`progress`, then `done`)",
    responses={
        200: sse_response(
            "The run's progress.",
            {"progress": RunPublic, "done": RunPublic, "error": ErrorBody},
        ),
        **READ_ERRORS,
    },
    response_class=EventSourceResponse,
)
async def run_events(run_id: str, _: StreamAdminDep, state: StateDep) -> EventSourceResponse:
    async with state.sessions() as session:
        await _run(session, run_id)

    async def events() -> AsyncIterator[Any]:
        last: tuple[Any, ...] | None = None
        while True:
            async with state.sessions() as session:
                run = await session.get(ValidationRun, run_id)
            if run is None:
                yield sse(
                    "error",
                    ErrorBody(code="not_found", message="The run was deleted.").model_dump_json(),
                )
                return
            now_ = (run.status, run.total, run.scored, run.failed)
            if now_ != last:
                last = now_
                yield sse("progress", RunPublic.of(run).model_dump_json())
            if run.status in ("done", "failed"):
                yield sse("done", RunPublic.of(run).model_dump_json())
                return
            await asyncio.sleep(max(state.settings.events_poll_s, 0.2))

    return EventSourceResponse(
        events(), ping=PING_S, sep=SEP, headers={"Cache-Control": "no-store"}
    )


async def _report(session: AsyncSession, run_id: str) -> tuple[ValidationRun, dict[str, Any]]:
    run = await _run(session, run_id)
    if run.report is None:
        raise NotFound("This run has no report yet.", details={"status": run.status})
    return run, run.report


@runs.get(
    "/{run_id}/report",
    response_model=ValidationReport,
    operation_id="getValidationReport",
    summary="The run's report: n per class, AUC, ROC, points with CIs, calibration, subgroups",
    responses=READ_ERRORS,
)
async def get_report(run_id: str, _: AdminDep, session: SessionDep) -> ValidationReport:
    return ValidationReport.model_validate((await _report(session, run_id))[1])


@runs.get(
    "/{run_id}/report.pdf",
    operation_id="downloadValidationReportPdf",
    summary="The run's report as a PDF",
    responses={200: binary_response("The report as PDF.", "application/pdf"), **READ_ERRORS},
    response_class=Response,
)
async def get_report_pdf(run_id: str, _: AdminDep, session: SessionDep) -> Response:
    run, body = await _report(session, run_id)
    pdf = await asyncio.to_thread(report_pdf, run.name, body)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="validation-{run.id}.pdf"'},
    )


@runs.get(
    "/{run_id}/scores.csv",
    operation_id="downloadValidationScores",
    summary="Per-image scores of the run as CSV (file, label, subgroups, probability, ...)",
    responses={200: binary_response("Per-image scores as CSV.", "text/csv"), **READ_ERRORS},
    response_class=Response,
)
async def get_scores(run_id: str, _: AdminDep, session: SessionDep) -> Response:
    run = await _run(session, run_id)
    text = scores_csv(await _items(session, run.id))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="scores-{run.id}.csv"'},
    )


@runs.delete(
    "/{run_id}/images",
    status_code=204,
    operation_id="deleteValidationImages",
    summary="Delete the run's images now (report and scores stay)",
    responses=READ_ERRORS,
)
async def delete_images(
    run_id: str, _: AdminDep, principal: UserPrincipalDep, state: StateDep, session: SessionDep
) -> None:
    await _run(session, run_id)
    await purge_images(state, run_id)
    audit(session, principal, "validation_images_delete", None, details={"run_id": run_id})
    await session.commit()


@runs.delete(
    "/{run_id}",
    status_code=204,
    operation_id="deleteValidationRun",
    summary="Delete the run: images, scores and report (a site point adopted from it stays)",
    responses=CHANGE_ERRORS,
)
async def delete_run(
    run_id: str, _: AdminDep, principal: UserPrincipalDep, state: StateDep, session: SessionDep
) -> None:
    run = await _run(session, run_id)
    if run.status in ("queued", "running"):
        raise Conflict("The run is scoring; delete it once it has finished.")
    await purge_images(state, run_id)
    await session.execute(delete(ValidationItem).where(ValidationItem.run_id == run_id))
    await session.delete(run)
    audit(session, principal, "validation_run_delete", None, details={"run_id": run_id})
    await session.commit()
