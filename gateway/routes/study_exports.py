"""A finished study for people and systems outside the app: the PDF report (to print and
download) and the FHIR R4B DiagnosticReport (for an EHR). Authorized like the study itself; the
words follow the reader (patients' or doctors', :mod:`gateway.wording`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response

from gateway.deps import SessionDep, StateDep, StudiesPrincipal, audit
from gateway.fhir import MEDIA_TYPE as FHIR_JSON
from gateway.fhir import diagnostic_report
from gateway.routes.common import READ_ERRORS
from gateway.studies import load_readable
from gateway.study_record import StudyRecord, load_pictures, load_record
from shared.errors import Conflict, error_responses
from shared.openapi import binary_response

router = APIRouter(prefix="/v1/studies", tags=["studies"])

_NO_STORE = {"Cache-Control": "private, no-store"}


def _fhir_json(record: StudyRecord) -> str:
    return diagnostic_report(record).model_dump_json(exclude_none=True)


def _pdf(record: StudyRecord) -> bytes:
    # fpdf (and the fontTools under it) takes a third of a second to import: loaded by the
    # first report, in its worker thread, rather than at every start-up.
    from gateway.report import build_pdf

    return build_pdf(record)


_ERRORS = {**READ_ERRORS, **error_responses(Conflict)}


@router.get(
    "/{study_id}/report",
    operation_id="getStudyReport",
    tags=["studies"],
    summary="The study's report as a PDF (to print or download)",
    description="The patient's name as entered, the study date, each image with and without "
    "its overlay, the result in the words the web UI shows this reader (patients: the category "
    "in words; doctors: also the score, the operating point with its measured sensitivity and "
    "specificity, and the reliability), the model versions, the doctors' replies the reader "
    "may read, and the screening-aid statement. 409 until the study has succeeded.",
    response_class=Response,
    responses={200: binary_response("PDF.", "application/pdf"), **_ERRORS},
)
async def get_study_report(
    study_id: str,
    principal: StudiesPrincipal,
    state: StateDep,
    session: SessionDep,
    download: Annotated[
        bool, Query(description="Send as an attachment (save) rather than inline (view).")
    ] = False,
) -> Response:
    study = await load_readable(session, principal, study_id)
    record = await load_record(state, session, principal, study)
    await load_pictures(state, session, record)
    pdf = await asyncio.to_thread(_pdf, record)
    audit(session, principal, "read_report", study.id)
    await session.commit()
    disposition = "attachment" if download else "inline"
    headers = {
        **_NO_STORE,
        "Content-Disposition": f'{disposition}; filename="irmi-study-{study.id}.pdf"',
    }
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get(
    "/{study_id}/fhir",
    operation_id="getStudyFhir",
    tags=["studies"],
    summary="The study's result as a FHIR R4B DiagnosticReport with contained Observations",
    description="For EHR integration: the category (doctors: also the score, the operating "
    "point with its measured sensitivity and specificity) and the model versions as "
    "Observations; the conclusion is the not-a-diagnosis text. Validated against the "
    "`fhir.resources` R4B models. 409 until the study has succeeded.",
    response_class=Response,
    responses={
        200: {"description": "FHIR JSON.", "content": {FHIR_JSON: {}}},
        **_ERRORS,
    },
)
async def get_study_fhir(
    study_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> Response:
    study = await load_readable(session, principal, study_id)
    record = await load_record(state, session, principal, study)
    # In a worker thread: the first call imports fhir.resources (a few hundred ms) and
    # validating the report is pydantic work the event loop need not wait for.
    body = await asyncio.to_thread(_fhir_json, record)
    audit(session, principal, "read_fhir", study.id)
    await session.commit()
    return Response(body, media_type=FHIR_JSON, headers=_NO_STORE)
