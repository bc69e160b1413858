"""Doctors by specialty (sorted by rating) and consultations: a patient shares a study with a
doctor and asks a question; that doctor (and no other) sees the study and replies; the patient
rates the doctor once per consultation, and may revoke the doctor's access to the study.

Only verified doctors are listed and can receive studies (gateway/sharing.py). A doctor's
rating is the mean over patients, each patient counted once (the mean of their own ratings),
so one patient opening many consultations cannot move it more than any other."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import func, select, update
from sse_starlette import EventSourceResponse

from gateway.deps import (
    DoctorDep,
    PatientDep,
    SessionDep,
    StateDep,
    StreamUser,
    UserDep,
    UserPrincipalDep,
    audit,
)
from gateway.event_schemas import CONSULTATION_EVENTS
from gateway.feeds import ConsultationFeed
from gateway.models import Consultation, Study, User
from gateway.routes.common import (
    CHANGE_ERRORS,
    LIST_ERRORS,
    READ_ERRORS,
    LastEventId,
    Offset,
    resume_from,
)
from gateway.schemas import (
    SPECIALTIES,
    ConsultationCreate,
    ConsultationList,
    ConsultationPublic,
    DoctorList,
    DoctorPublic,
    PersonRef,
    RatingRequest,
    ReplyRequest,
    Specialty,
    SpecialtyList,
    StudyAccess,
)
from gateway.sharing import VERIFIED, doctor_is_active
from shared.clock import now
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    Unauthorized,
    ValidationFailed,
    error_responses,
)
from shared.openapi import sse_response

doctors = APIRouter(prefix="/v1", tags=["doctors"])
consultations = APIRouter(prefix="/v1/consultations", tags=["consultations"])


def _rating_stats() -> Any:
    """Per doctor: the mean over patients of each patient's mean rating, and the patients."""
    per_patient = (
        select(
            Consultation.doctor_id.label("doctor_id"),
            func.avg(Consultation.rating).label("rating"),
        )
        .where(Consultation.rating.is_not(None))
        .group_by(Consultation.doctor_id, Consultation.patient_id)
        .subquery()
    )
    return (
        select(
            per_patient.c.doctor_id,
            func.avg(per_patient.c.rating).label("rating"),
            func.count().label("ratings_count"),
        )
        .group_by(per_patient.c.doctor_id)
        .subquery()
    )


def _doctor_filters(specialty: str | None, doctor_id: str | None) -> list[Any]:
    """Which users a doctors listing shows (one place for the list, its count and one doctor)."""
    # Patients see verified doctors only (pending, rejected and suspended ones are invisible).
    where: list[Any] = [User.role == "doctor", User.doctor_status == VERIFIED]
    if specialty is not None:
        where.append(User.specialty == specialty)
    if doctor_id is not None:
        where.append(User.id == doctor_id)
    return where


async def _doctor_rows(
    session: SessionDep,
    specialty: str | None,
    doctor_id: str | None,
    limit: int | None = None,
    offset: int = 0,
) -> list[DoctorPublic]:
    stats = _rating_stats()
    query = (
        select(User, stats.c.rating, stats.c.ratings_count)
        .outerjoin(stats, stats.c.doctor_id == User.id)
        .where(*_doctor_filters(specialty, doctor_id))
        # Best rated first; unrated doctors last; then by the number of ratings and by name.
        .order_by(
            stats.c.rating.is_(None),
            stats.c.rating.desc(),
            stats.c.ratings_count.desc(),
            User.full_name,
            User.id,
        )
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    out = []
    for user, rating, ratings_count in (await session.execute(query)).all():
        out.append(
            DoctorPublic(
                id=user.id,
                full_name=user.full_name,
                specialty=user.specialty,
                licence_number=user.licence_number,
                rating=round(float(rating), 2) if rating is not None else None,
                ratings_count=int(ratings_count or 0),
            )
        )
    return out


@doctors.get(
    "/specialties",
    operation_id="listSpecialties",
    response_model=SpecialtyList,
    summary="The fixed list of doctors' specialties",
)
async def list_specialties() -> SpecialtyList:
    return SpecialtyList(items=SPECIALTIES)


@doctors.get(
    "/doctors",
    operation_id="listDoctors",
    response_model=DoctorList,
    summary="Verified doctors, optionally of one specialty, best rated first",
    responses=LIST_ERRORS,
)
async def list_doctors(
    _: UserDep,
    session: SessionDep,
    specialty: Specialty | None = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 50,
    offset: Offset = 0,
) -> DoctorList:
    total = await session.scalar(
        select(func.count(User.id)).where(*_doctor_filters(specialty, None))
    )
    items = await _doctor_rows(session, specialty, None, limit, offset)
    return DoctorList(items=items, total=int(total or 0), limit=limit, offset=offset)


@doctors.get(
    "/doctors/{doctor_id}",
    operation_id="getDoctor",
    response_model=DoctorPublic,
    summary="One doctor",
    responses=READ_ERRORS,
)
async def get_doctor(doctor_id: str, _: UserDep, session: SessionDep) -> DoctorPublic:
    rows = await _doctor_rows(session, None, doctor_id)
    if not rows:
        raise NotFound("No such doctor.")
    return rows[0]


async def _public(session: SessionDep, rows: list[Consultation]) -> list[ConsultationPublic]:
    if not rows:
        return []
    ids = {r.patient_id for r in rows} | {r.doctor_id for r in rows}
    users = {
        u.id: u for u in (await session.execute(select(User).where(User.id.in_(ids)))).scalars()
    }
    out = []
    for r in rows:
        patient, doctor = users[r.patient_id], users[r.doctor_id]
        out.append(
            ConsultationPublic(
                id=r.id,
                study_id=r.study_id,
                study_kind=r.study_kind,
                patient=PersonRef(id=patient.id, full_name=patient.full_name),
                doctor=PersonRef(
                    id=doctor.id,
                    full_name=doctor.full_name,
                    specialty=doctor.specialty,
                ),
                question=r.question,
                answer=r.answer,
                status=r.status,
                rating=r.rating,
                created_at=r.created_at,
                updated_at=r.updated_at,
                answered_at=r.answered_at,
                study_access=_access(r, doctor),
                study_deleted_at=r.study_deleted_at,
                access_revoked_at=r.access_revoked_at,
            )
        )
    return out


def _access(row: Consultation, doctor: User) -> StudyAccess:
    if row.study_deleted_at is not None:
        return "deleted"
    if row.access_revoked_at is not None:
        return "revoked"
    return "shared" if doctor_is_active(doctor) else "suspended"


async def _one(session: SessionDep, row: Consultation) -> ConsultationPublic:
    return (await _public(session, [row]))[0]


async def _load(
    session: SessionDep,
    user: UserDep,
    consultation_id: str,
    party: Literal["patient", "doctor"] | None = None,
) -> Consultation:
    """The consultation if ``user`` is one of its two parties (``party``: that one), else 404."""
    row = await session.get(Consultation, consultation_id)
    if row is None or user.id not in {row.patient_id, row.doctor_id}:
        raise NotFound("No such consultation.")
    if party is not None and user.id != (row.patient_id if party == "patient" else row.doctor_id):
        raise NotFound("No such consultation.")
    return row


@consultations.post(
    "",
    operation_id="askConsultation",
    response_model=ConsultationPublic,
    status_code=201,
    summary="Share one of my studies with a doctor, with a question",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def ask(
    body: ConsultationCreate, patient: PatientDep, session: SessionDep
) -> ConsultationPublic:
    study = await session.get(Study, body.study_id)
    if study is None or study.owner_id != patient.id:
        raise NotFound("No such study.")
    doctor = await session.get(User, body.doctor_id)
    if doctor is None or doctor.role != "doctor":
        raise NotFound("No such doctor.")
    if not doctor_is_active(doctor):
        raise Forbidden(
            "This doctor's account is not verified, so it cannot receive studies; "
            "choose a doctor from the list.",
            details={"reason": "doctor_not_verified"},
        )
    row = Consultation(
        study_id=study.id,
        study_kind=study.kind,
        patient_id=patient.id,
        doctor_id=doctor.id,
        question=body.question,
    )
    session.add(row)
    await session.commit()
    return await _one(session, row)


@consultations.get(
    "",
    operation_id="listConsultations",
    response_model=ConsultationList,
    summary="My consultations (patients: asked; doctors: addressed to me), latest change first",
    description="Poll this list to see the other side's status changes.",
    responses=LIST_ERRORS,
)
async def list_consultations(
    user: UserDep,
    session: SessionDep,
    status: Literal["open", "answered"] | None = None,
    study_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConsultationList:
    mine = Consultation.doctor_id if user.role == "doctor" else Consultation.patient_id
    query = select(Consultation).where(mine == user.id)
    if status is not None:
        query = query.where(Consultation.status == status)
    if study_id is not None:
        query = query.where(Consultation.study_id == study_id)
    rows = list(
        (
            await session.execute(
                query.order_by(Consultation.updated_at.desc(), Consultation.id).limit(limit)
            )
        ).scalars()
    )
    return ConsultationList(items=await _public(session, rows))


@consultations.get(
    "/events",
    operation_id="streamConsultationEvents",
    summary="Server-sent events: my consultations as they change (new, answered, rated)",
    response_class=EventSourceResponse,
    responses={
        200: sse_response(
            "My consultations as they change. The event id is the change time in "
            "microseconds: reconnect with `Last-Event-ID` to get only later changes. The "
            "stream ends after `max_seconds`, and when the session is revoked or the access "
            "token expires; reconnect (with a fresh token).",
            CONSULTATION_EVENTS,
        ),
        **error_responses(Unauthorized, Forbidden, Overloaded),
    },
)
async def consultation_events(
    principal: StreamUser,
    state: StateDep,
    last_event_id: LastEventId = None,
    max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300,
) -> EventSourceResponse:
    since = resume_from(last_event_id)
    sub = state.streams.open(principal, deadline=time.time() + max_seconds)
    feed = state.streams.feed("consultations", lambda: ConsultationFeed(state, _public))
    feed.follow(sub, since)
    return state.streams.response(sub, retry_ms=3000)


@consultations.get(
    "/{consultation_id}",
    operation_id="getConsultation",
    response_model=ConsultationPublic,
    summary="One consultation",
    responses=READ_ERRORS,
)
async def get_consultation(
    consultation_id: str, user: UserDep, session: SessionDep
) -> ConsultationPublic:
    return await _one(session, await _load(session, user, consultation_id))


@consultations.post(
    "/{consultation_id}/reply",
    operation_id="replyToConsultation",
    response_model=ConsultationPublic,
    summary="The doctor's answer (once)",
    responses=CHANGE_ERRORS,
)
async def reply(
    consultation_id: str, body: ReplyRequest, doctor: DoctorDep, session: SessionDep
) -> ConsultationPublic:
    row = await _load(session, doctor, consultation_id, "doctor")
    if not doctor_is_active(doctor):
        raise Forbidden(
            "Your account is not verified (or is suspended): you cannot answer consultations.",
            details={"reason": "doctor_not_verified"},
        )
    if row.answer is not None:
        raise Conflict("This consultation is already answered.")
    ts = now()
    row.answer = body.answer
    row.status = "answered"
    row.answered_at = row.updated_at = ts
    await session.commit()
    return await _one(session, row)


@consultations.post(
    "/{consultation_id}/rating",
    operation_id="rateConsultation",
    response_model=ConsultationPublic,
    summary="Rate the doctor 1-5, once, after the answer",
    responses=CHANGE_ERRORS,
)
async def rate(
    consultation_id: str, body: RatingRequest, patient: PatientDep, session: SessionDep
) -> ConsultationPublic:
    row = await _load(session, patient, consultation_id, "patient")
    if row.status != "answered":
        raise Conflict("A consultation can be rated once it is answered.")
    ts = now()
    # Once, atomically: two concurrent ratings (on any replicas) cannot both land.
    done = await session.execute(
        update(Consultation)
        .where(Consultation.id == row.id, Consultation.rating.is_(None))
        .values(rating=body.rating, rated_at=ts, updated_at=ts)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("This consultation is already rated.")
    await session.commit()
    await session.refresh(row)
    return await _one(session, row)


@consultations.post(
    "/{consultation_id}/revoke",
    operation_id="revokeConsultationAccess",
    response_model=ConsultationPublic,
    summary="Withdraw this doctor's access to the study (the consultation record stays)",
    description="After this the doctor gets 404 for the study, its images and heatmaps. "
    "Asking the same doctor again about the study shares it again.",
    responses=READ_ERRORS,
)
async def revoke_access(
    consultation_id: str, patient: PatientDep, principal: UserPrincipalDep, session: SessionDep
) -> ConsultationPublic:
    row = await _load(session, patient, consultation_id, "patient")
    ts = now()
    # Every consultation of this patient with this doctor about this study: access is per
    # (study, doctor), not per question.
    await session.execute(
        update(Consultation)
        .where(
            Consultation.patient_id == patient.id,
            Consultation.doctor_id == row.doctor_id,
            Consultation.study_id == row.study_id,
            Consultation.access_revoked_at.is_(None),
        )
        .values(access_revoked_at=ts, updated_at=ts)
    )
    audit(
        session,
        principal,
        "revoke_share",
        row.study_id,
        subject_user_id=row.doctor_id,
        details={"consultation_id": row.id},
    )
    await session.commit()
    await session.refresh(row)
    return await _one(session, row)
