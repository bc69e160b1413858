"""Study logic shared by the routes and the mammography relay: reading uploads, access rules,
turning stored rows into public models, and the primitive writes (events, failing, deleting)
that the data layer for study writes (:mod:`gateway.study_writes`) builds on."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import timedelta
from typing import Any

from fastapi import UploadFile
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import Principal
from gateway.models import Consultation, Study, StudyEvent, StudyFile
from gateway.operating_point import stored_reading
from gateway.schemas import (
    ChestResult,
    ExamResultPublic,
    StudyDetail,
    StudyImage,
    StudySummary,
    mammo_category,
)
from gateway.sharing import doctor_can_read
from gateway.state import GatewayState
from shared.clock import now
from shared.contracts.mammo import ProgressEvent
from shared.contracts.screening import Category
from shared.errors import ErrorBody, InvalidImage, NotFound, PayloadTooLarge, ValidationFailed
from shared.imaging import sniff_format

log = logging.getLogger("irmi.gateway.studies")

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}
TERMINAL = {"succeeded", "failed"}


async def read_upload(upload: UploadFile, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of one uploaded file (refused past ``max_bytes``) and its sniffed media type."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"Each file may be at most {max_bytes} bytes.", details={"max_bytes": max_bytes}
        )
    fmt = sniff_format(data)  # raises unsupported_format / invalid_image
    return data, MEDIA_TYPES[fmt]


def mammogram_views(
    tagged: list[tuple[str, UploadFile | None]],
    untagged: list[UploadFile] | None,
    max_views: int,
) -> list[tuple[str | None, UploadFile]]:
    """The uploaded views in request order, tagged ones first (tag None = detect); 1 to
    ``max_views`` of them."""
    views: list[tuple[str | None, UploadFile]] = [(t, f) for t, f in tagged if f is not None]
    views += [(None, f) for f in untagged or []]
    if not views or len(views) > max_views:
        raise ValidationFailed(
            f"Send between 1 and {max_views} mammogram views.", details={"views": len(views)}
        )
    return views


def decode_png_b64(value: str) -> bytes:
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage("An inference service returned a corrupt heatmap.") from exc
    return data


def study_url(study_id: str) -> str:
    return f"/v1/studies/{study_id}"


def heatmap_url(study_id: str, name: str) -> str:
    return f"/v1/studies/{study_id}/heatmaps/{name}"


async def add_event(
    session: AsyncSession, study_id: str, event: str, data: dict[str, Any]
) -> StudyEvent:
    last = await session.scalar(
        select(func.max(StudyEvent.seq)).where(StudyEvent.study_id == study_id)
    )
    row = StudyEvent(study_id=study_id, seq=int(last or 0) + 1, event=event, data=data)
    session.add(row)
    return row


def result_label(study: Study) -> str | None:
    if study.result is None:
        return None
    label = study.result.get("label")
    return str(label) if label is not None else None


def chest_result(stored: dict[str, Any]) -> ChestResult:
    """A stored chest result as served: with the reading it was stored with, or, stored
    before operating points, the one its own deprecated threshold gives."""
    effective = stored_reading(stored).model_dump(mode="json")
    return ChestResult.model_validate({**stored, "effective": effective})


def result_category(study: Study) -> Category | None:
    if study.result is None:
        return None
    if study.kind == "mammography":  # stored before categories: its label's (see schemas)
        return mammo_category(study.result)
    return stored_reading(study.result).category


def image_url(study_id: str, file_id: str) -> str:
    return f"/v1/studies/{study_id}/images/{file_id}"


def display_url(study_id: str, file_id: str) -> str:
    return f"{image_url(study_id, file_id)}/display"


def thumbnail_url(study_id: str, file_id: str) -> str:
    return f"{image_url(study_id, file_id)}/thumbnail"


def summary(study: Study, thumbnail_url: str | None = None) -> StudySummary:
    return StudySummary(
        id=study.id,
        kind=study.kind,
        status=study.status,
        label=result_label(study),
        category=result_category(study),
        created_at=study.created_at,
        updated_at=study.updated_at,
        finished_at=study.finished_at,
        thumbnail_url=thumbnail_url,
    )


async def thumbnails(session: AsyncSession, study_ids: list[str]) -> dict[str, str]:
    """The thumbnail URL of each study's first original image, in one query (for a history
    page: small JPEGs, never the originals)."""
    if not study_ids:
        return {}
    rows = await session.execute(
        select(StudyFile.study_id, StudyFile.id, StudyFile.position)
        .where(StudyFile.study_id.in_(study_ids), StudyFile.role == "original")
        .order_by(StudyFile.study_id, StudyFile.position)
    )
    out: dict[str, str] = {}
    for study_id, file_id, _ in rows.all():
        out.setdefault(study_id, thumbnail_url(study_id, file_id))
    return out


def detail(study: Study, files: list[StudyFile]) -> StudyDetail:
    images = [
        StudyImage(
            id=f.id,
            name=f.name,
            media_type=f.media_type,
            size=f.size,
            url=image_url(study.id, f.id),
            display_url=display_url(study.id, f.id),
            thumbnail_url=thumbnail_url(study.id, f.id),
        )
        for f in sorted(files, key=lambda f: f.position)
        if f.role == "original"
    ]
    out = StudyDetail(
        **summary(study, images[0].thumbnail_url if images else None).model_dump(),
        owner_id=study.owner_id,
        images=images,
        events_url=f"/v1/studies/{study.id}/events",
    )
    if study.result is not None and study.kind == "chest":
        out.chest_result = chest_result(study.result)
    elif study.result is not None:
        out.mammography_result = ExamResultPublic.model_validate(study.result)
    if study.error is not None:
        out.error = ErrorBody.model_validate(study.error)
    if study.progress is not None and study.status not in TERMINAL:
        out.progress = ProgressEvent.model_validate(study.progress)
    return out


async def can_read(session: AsyncSession, principal: Principal, study: Study) -> bool:
    user = principal.user
    if user.role == "patient":
        return study.owner_id == user.id
    if user.role == "doctor":
        return await doctor_can_read(session, user, study.id)
    return False


async def load_readable(session: AsyncSession, principal: Principal, study_id: str) -> Study:
    """The study if the caller may read it; otherwise 404 (its existence is not revealed)."""
    study = await session.get(Study, study_id)
    if study is None or not await can_read(session, principal, study):
        raise NotFound("No such study.")
    return study


async def fail_study(
    session: AsyncSession, study: Study, code: str, message: str, details: dict[str, Any] | None
) -> None:
    """Mark a study failed and append the terminal ``error`` event (same transaction)."""
    if study.status in TERMINAL:
        return
    err = ErrorBody(code=code, message=message, details=details or {}).model_dump()
    study.status = "failed"
    study.error = err
    study.finished_at = study.updated_at = now()
    await add_event(session, study.id, "error", {"study_id": study.id, "error": err})


async def expire_if_stale(state: GatewayState, session: AsyncSession, study: Study) -> None:
    """A running study whose relay went silent (its gateway replica died) ends ``failed``."""
    if study.status in TERMINAL:
        return
    if now() - study.updated_at > timedelta(seconds=state.settings.relay_stale_s):
        await fail_study(
            session,
            study,
            "service_unavailable",
            "The analysis stopped reporting progress and was abandoned; please upload again.",
            {"reason": "stale"},
        )
        await session.commit()


async def delete_study(state: GatewayState, session: AsyncSession, study: Study) -> None:
    keys = set(
        (await session.execute(select(StudyFile.blob_key).where(StudyFile.study_id == study.id)))
        .scalars()
        .all()
    )
    await session.execute(delete(StudyEvent).where(StudyEvent.study_id == study.id))
    # The consultations stay (the doctor's record of the question and the answer), marked as
    # about a deleted study; see gateway/README.md, "What a patient's deletion leaves".
    await session.execute(
        update(Consultation)
        .where(Consultation.study_id == study.id, Consultation.study_deleted_at.is_(None))
        .values(study_deleted_at=now())
    )
    await session.execute(delete(StudyFile).where(StudyFile.study_id == study.id))
    await session.delete(study)
    await session.commit()
    await remove_unreferenced(state, session, keys)


async def remove_unreferenced(state: GatewayState, session: AsyncSession, keys: set[str]) -> None:
    """Content-addressed blobs may be shared: delete a blob only when no study uses it."""
    for key in keys:
        used = await session.scalar(
            select(func.count()).select_from(StudyFile).where(StudyFile.blob_key == key)
        )
        if not used:
            await state.store.delete(key)
