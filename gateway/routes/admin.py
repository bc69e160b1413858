"""Admin routes: doctors' accounts and their verification.

A doctor signs up ``pending``; an admin verifies (``verified``), rejects (``rejected``) or
later suspends (``suspended``) the account, and may verify a rejected or suspended one again.
Every decision is an audit row (who, when, from which status to which, why). Admin accounts
exist only through ``python -m gateway.admin create-admin``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.account_schemas import (
    DecisionList,
    DecisionPublic,
    DecisionRequest,
    DoctorAccount,
    DoctorAccountPage,
    PersonBrief,
)
from gateway.deps import SessionDep, UserDep, UserPrincipalDep, audit
from gateway.models import AuditEvent, User
from gateway.routes.common import CHANGE_ERRORS, LIST_ERRORS, READ_ERRORS, Offset
from gateway.schemas import DoctorStatus
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ACTION = "doctor_verification"

Decision = Literal["verify", "reject", "suspend"]
# decision -> (statuses it applies to, resulting status)
TRANSITIONS: dict[str, tuple[set[str], DoctorStatus]] = {
    "verify": ({"pending", "rejected", "suspended"}, "verified"),
    "reject": ({"pending"}, "rejected"),
    "suspend": ({"verified"}, "suspended"),
}


async def get_admin(user: UserDep) -> User:
    if user.role != "admin":
        raise Forbidden("Only administrators may do this.", details={"required_role": "admin"})
    return user


AdminDep = Annotated[User, Depends(get_admin)]


async def _decisions(
    session: AsyncSession, doctor_ids: list[str], limit: int | None
) -> dict[str, list[DecisionPublic]]:
    query = (
        select(AuditEvent)
        .where(AuditEvent.action == ACTION, AuditEvent.subject_user_id.in_(doctor_ids))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = list((await session.execute(query)).scalars())
    admin_ids = {r.user_id for r in rows if r.user_id}
    admins = {
        u.id: u
        for u in (await session.execute(select(User).where(User.id.in_(admin_ids)))).scalars()
    }
    out: dict[str, list[DecisionPublic]] = {}
    for r in rows:
        d = r.details or {}
        admin = admins.get(r.user_id or "")
        out.setdefault(r.subject_user_id or "", []).append(
            DecisionPublic(
                at=r.at,
                admin=PersonBrief(id=admin.id, full_name=admin.full_name) if admin else None,
                decision=d["decision"],
                from_status=d["from_status"],
                to_status=d["to_status"],
                reason=d.get("reason"),
            )
        )
    return out


def _account(user: User, history: dict[str, list[DecisionPublic]]) -> DoctorAccount:
    """The account with its latest decision (``history`` as :func:`_decisions` returns it)."""
    return DoctorAccount(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        specialty=user.specialty,
        licence_number=user.licence_number,
        status=user.doctor_status or "pending",
        created_at=user.created_at,
        last_decision=next(iter(history.get(user.id, [])), None),
    )


@router.get(
    "/doctors",
    operation_id="listDoctorAccounts",
    response_model=DoctorAccountPage,
    summary="Doctors' accounts by verification status (default: pending), oldest first",
    responses=LIST_ERRORS,
)
async def list_doctor_accounts(
    _: AdminDep,
    session: SessionDep,
    status: DoctorStatus | None = Query(default="pending", description="Omit for pending."),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> DoctorAccountPage:
    query = select(User).where(User.role == "doctor")
    if status is not None:
        query = query.where(User.doctor_status == status)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    users = list(
        (
            await session.execute(
                query.order_by(User.created_at, User.id).limit(limit).offset(offset)
            )
        ).scalars()
    )
    history = await _decisions(session, [u.id for u in users], None)
    return DoctorAccountPage(
        items=[_account(u, history) for u in users],
        total=int(total or 0),
        limit=limit,
        offset=offset,
    )


async def _doctor(session: AsyncSession, doctor_id: str) -> User:
    user = await session.get(User, doctor_id)
    if user is None or user.role != "doctor":
        raise NotFound("No such doctor.")
    return user


@router.get(
    "/doctors/{doctor_id}/decisions",
    operation_id="listDoctorDecisions",
    response_model=DecisionList,
    summary="Every verification decision about this doctor, latest first",
    responses=READ_ERRORS,
)
async def list_decisions(doctor_id: str, _: AdminDep, session: SessionDep) -> DecisionList:
    await _doctor(session, doctor_id)
    return DecisionList(items=(await _decisions(session, [doctor_id], 200)).get(doctor_id, []))


async def _decide(
    decision: Decision,
    doctor_id: str,
    body: DecisionRequest,
    principal: UserPrincipalDep,
    session: AsyncSession,
) -> DoctorAccount:
    doctor = await _doctor(session, doctor_id)
    allowed, to_status = TRANSITIONS[decision]
    from_status = doctor.doctor_status or "pending"
    if from_status not in allowed:
        raise Conflict(
            f"This doctor is {from_status}: the decision '{decision}' does not apply.",
            details={"status": from_status, "decision": decision},
        )
    if decision != "verify" and body.reason is None:
        raise ValidationFailed(
            "Give a reason to reject or suspend a doctor.", details={"field": "reason"}
        )
    doctor.doctor_status = to_status
    details = {
        "decision": decision,
        "from_status": from_status,
        "to_status": to_status,
        "reason": body.reason,
    }
    audit(session, principal, ACTION, None, subject_user_id=doctor.id, details=details)
    await session.commit()
    return _account(doctor, await _decisions(session, [doctor.id], 1))


@router.post(
    "/doctors/{doctor_id}/verify",
    operation_id="verifyDoctor",
    response_model=DoctorAccount,
    summary="Verify a doctor (pending, rejected or suspended): listed and shareable at once",
    responses=CHANGE_ERRORS,
)
async def verify_doctor(
    doctor_id: str,
    _: AdminDep,
    principal: UserPrincipalDep,
    session: SessionDep,
    body: DecisionRequest | None = None,
) -> DoctorAccount:
    return await _decide("verify", doctor_id, body or DecisionRequest(), principal, session)


def _reasoned_decision_route(decision: Decision, summary: str) -> None:
    """``POST /doctors/{doctor_id}/<decision>`` for a decision that needs a reason (reject,
    suspend): the same handler, named ``<decision>_doctor``."""

    async def decide(
        doctor_id: str,
        body: DecisionRequest,
        _: AdminDep,
        principal: UserPrincipalDep,
        session: SessionDep,
    ) -> DoctorAccount:
        return await _decide(decision, doctor_id, body, principal, session)

    router.post(
        f"/doctors/{{doctor_id}}/{decision}",
        response_model=DoctorAccount,
        summary=summary,
        responses=CHANGE_ERRORS,
        name=f"{decision}_doctor",
        operation_id=f"{decision}Doctor",
    )(decide)


_reasoned_decision_route("reject", "Reject a pending doctor's application (reason required)")
_reasoned_decision_route(
    "suspend", "Suspend a verified doctor (reason required): unlisted, shares suspended"
)
