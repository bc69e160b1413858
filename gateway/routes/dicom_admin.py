"""Admins read the DICOM integration's record: the studies received (and what became of each:
analysed into which IRMI study, refused or failed with the reason) and every result object
sent back to the PACS (status, attempts, last error)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import SessionDep
from gateway.dicom_tables import DicomExport, DicomStudy
from gateway.routes.admin import AdminDep
from gateway.routes.common import Offset
from shared.errors import Forbidden, Unauthorized, error_responses

router = APIRouter(prefix="/v1/admin/dicom", tags=["admin"])
_ERRORS = error_responses(Unauthorized, Forbidden)


class DicomStudyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    study_uid: str
    source: str
    status: Literal["receiving", "analysing", "done", "refused", "failed"]
    instances: int
    kind: str | None
    study_id: str | None
    reason: dict[str, Any] | None
    created_at: datetime
    last_received_at: datetime
    finished_at: datetime | None


class DicomExportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    dicom_study_id: str
    study_id: str
    kind: Literal["sr", "sc"]
    study_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    destination: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None


class DicomStudyPage(BaseModel):
    items: list[DicomStudyPublic]
    total: int


class DicomExportPage(BaseModel):
    items: list[DicomExportPublic]
    total: int


Limit = Annotated[int, Query(ge=1, le=500)]


async def _newest_first(
    session: AsyncSession,
    table: type[DicomStudy] | type[DicomExport],
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    """One page of ``table`` (optionally of one ``status``), newest first, and the total."""
    query = select(table)
    if status:
        query = query.where(table.status == status)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(table.created_at.desc(), table.id).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


@router.get(
    "/studies",
    response_model=DicomStudyPage,
    operation_id="listDicomStudies",
    summary="Studies received over DICOM, newest first",
    responses=_ERRORS,
)
async def list_received(
    _: AdminDep,
    session: SessionDep,
    status: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DicomStudyPage:
    rows, total = await _newest_first(session, DicomStudy, status, limit, offset)
    return DicomStudyPage(items=[DicomStudyPublic.model_validate(r) for r in rows], total=total)


@router.get(
    "/exports",
    response_model=DicomExportPage,
    operation_id="listDicomExports",
    summary="Results sent (or being sent) to the PACS, newest first",
    responses=_ERRORS,
)
async def list_exports(
    _: AdminDep,
    session: SessionDep,
    status: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DicomExportPage:
    rows, total = await _newest_first(session, DicomExport, status, limit, offset)
    return DicomExportPage(items=[DicomExportPublic.model_validate(r) for r in rows], total=total)
