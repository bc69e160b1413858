"""Who may read a study besides its patient: a VERIFIED doctor the patient shared it with, as
long as the patient has not revoked that share (nor deleted the study).

A doctor who is not verified (pending, rejected or suspended) reads no study at all: the
shares addressed to them are suspended until an admin verifies the account.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import Consultation, User

VERIFIED = "verified"


def doctor_is_active(user: User) -> bool:
    return user.role == "doctor" and user.doctor_status == VERIFIED


def shared_study_ids(doctor: User) -> Select[Any]:
    """The ids of the studies this doctor may read now (a sub-select)."""
    query = select(Consultation.study_id).where(
        Consultation.doctor_id == doctor.id,
        Consultation.access_revoked_at.is_(None),
        Consultation.study_deleted_at.is_(None),
    )
    if not doctor_is_active(doctor):
        query = query.where(false())
    return query


async def doctor_can_read(session: AsyncSession, doctor: User, study_id: str) -> bool:
    if not doctor_is_active(doctor):
        return False
    shared = await session.scalar(
        select(func.count())
        .select_from(Consultation)
        .where(
            Consultation.study_id == study_id,
            Consultation.doctor_id == doctor.id,
            Consultation.access_revoked_at.is_(None),
            Consultation.study_deleted_at.is_(None),
        )
    )
    return bool(shared)
