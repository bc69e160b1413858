"""One finished study as its exports read it (the PDF report, :mod:`gateway.report`; the FHIR
DiagnosticReport, :mod:`gateway.fhir`): the patient's name as entered, the result as the reader
may read it (:mod:`gateway.wording`), the doctors' replies the reader may read, and, for the
PDF, each image's display rendering with and without its overlay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import Principal
from gateway.display import composite
from gateway.display_store import display_png
from gateway.models import Consultation, Study, StudyFile, User
from gateway.schemas import FileRef, StudyDetail
from gateway.state import GatewayState
from gateway.studies import detail
from gateway.wording import Reader, reader_of
from shared.contracts.chest import Finding as ChestFinding
from shared.contracts.common import CropBox, ModelRef
from shared.contracts.screening import Category, OperatingPoint, ScoreMap
from shared.errors import Conflict


@dataclass(frozen=True)
class Reply:
    doctor: str
    specialty: str | None
    answer: str
    answered_at: datetime | None


@dataclass(frozen=True)
class Finding:
    """A category at one level (the exam, a breast, a view), with its score."""

    label: str
    category: Category
    score: float | None


@dataclass(frozen=True)
class Reading:
    """What the result says, whoever reads it (the words are chosen later, per reader)."""

    category: Category
    score: float | None
    threshold: float | None
    operating_point: OperatingPoint | None
    models: list[ModelRef]
    disclaimer: str
    reliability_reasons: list[str] = field(default_factory=list)
    parts: list[Finding] = field(default_factory=list)  # mammography: per breast
    findings: list[ChestFinding] = field(default_factory=list)  # chest: under "abnormal"


@dataclass(frozen=True)
class Picture:
    title: str
    display: bytes  # PNG
    overlaid: bytes | None  # PNG: the display image with its overlay drawn over it


@dataclass
class StudyRecord:
    study: Study
    detail: StudyDetail
    patient_name: str
    reader: Reader
    reading: Reading
    replies: list[Reply]
    pictures: list[Picture] = field(default_factory=list)


def reading_of(out: StudyDetail) -> Reading:
    if out.chest_result is not None:
        r = out.chest_result
        e = r.effective
        return Reading(
            category=e.category,
            score=r.score,
            threshold=e.score_threshold,
            operating_point=e.operating_point,
            models=list(r.models),
            disclaimer=r.disclaimer,
            reliability_reasons=[x.value for x in r.reliability.reasons] if r.reliability else [],
            findings=list(r.findings),
        )
    m = out.mammography_result
    if m is None:
        raise Conflict("The study has no result yet.", details={"status": out.status})
    breasts = sorted(m.breasts, key=lambda b: 0 if b.laterality == "R" else 1)
    return Reading(
        category=m.category,
        score=m.score,
        threshold=m.score_threshold,
        operating_point=m.operating_point,
        models=list(m.models),
        disclaimer=m.disclaimer,
        parts=[
            Finding("Right breast" if b.laterality == "R" else "Left breast", b.category, b.score)
            for b in breasts
        ],
    )


async def _replies(session: AsyncSession, principal: Principal, study_id: str) -> list[Reply]:
    """The answers the reader may read: a patient all of theirs, a doctor their own."""
    query = (
        select(Consultation, User)
        .join(User, User.id == Consultation.doctor_id)
        .where(Consultation.study_id == study_id, Consultation.answer.is_not(None))
        .order_by(Consultation.answered_at)
    )
    if principal.user.role == "doctor":
        query = query.where(Consultation.doctor_id == principal.user.id)
    else:
        query = query.where(Consultation.patient_id == principal.user.id)
    rows = (await session.execute(query)).all()
    return [Reply(u.full_name, u.specialty, c.answer or "", c.answered_at) for c, u in rows]


async def load_record(
    state: GatewayState, session: AsyncSession, principal: Principal, study: Study
) -> StudyRecord:
    """The record of a readable study; 409 unless it succeeded."""
    if study.status != "succeeded" or study.result is None:
        raise Conflict(
            "The study has no result yet (or its analysis failed).",
            details={"status": study.status},
        )
    files = list(
        (await session.execute(select(StudyFile).where(StudyFile.study_id == study.id))).scalars()
    )
    out = detail(study, files)
    owner = await session.get(User, study.owner_id)
    return StudyRecord(
        study=study,
        detail=out,
        patient_name=owner.full_name if owner else "",
        reader=reader_of(principal.user.role),
        reading=reading_of(out),
        replies=await _replies(session, principal, study.id),
    )


def _overlay_name(ref: FileRef | None) -> str | None:
    return ref.url.rsplit("/", 1)[-1] if ref is not None else None


async def _picture(
    state: GatewayState,
    session: AsyncSession,
    files: dict[tuple[str, str], StudyFile],
    title: str,
    original: StudyFile,
    overlay: FileRef | None,
    score_map: ScoreMap | None,
) -> Picture:
    base = await display_png(state, session, original, "file")
    name = _overlay_name(overlay)
    row = files.get(("heatmap", name)) if name else None
    if row is None or overlay is None:
        return Picture(title, base, None)
    png = await state.store.get(row.blob_key)
    size = (score_map.image_width, score_map.image_height) if score_map else None
    covers: CropBox | None = overlay.covers
    overlaid = await asyncio.to_thread(composite, base, png, covers, size)
    return Picture(title, base, overlaid)


async def load_pictures(state: GatewayState, session: AsyncSession, record: StudyRecord) -> None:
    """Each original's display image, and with its overlay when it has one (chest: the score
    map's; mammography: each view's)."""
    files = {
        (f.role, f.name if f.role != "original" else f.id): f
        for f in (
            await session.execute(select(StudyFile).where(StudyFile.study_id == record.study.id))
        ).scalars()
    }
    originals = [files[("original", i.id)] for i in record.detail.images]
    out = record.detail
    pictures: list[Picture] = []
    if out.chest_result is not None and originals:
        r = out.chest_result
        pictures.append(
            await _picture(
                state, session, files, "Chest X-ray", originals[0], r.heatmap, r.score_map
            )
        )
    elif out.mammography_result is not None:
        by_name = {i.name: files[("original", i.id)] for i in out.images}
        for n, v in enumerate(out.mammography_result.views):
            original = (
                by_name.get(v.view_id)
                or (by_name.get(v.given_tag) if v.given_tag else None)
                or (originals[n] if n < len(originals) else None)
            )
            if original is None:
                continue
            ref = v.heatmaps.get("score_map") or v.heatmaps.get("malignant")
            pictures.append(
                await _picture(state, session, files, f"View {v.tag}", original, ref, v.score_map)
            )
    record.pictures = pictures
