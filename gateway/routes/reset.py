"""Password reset by a one-time link.

``POST /v1/auth/password-reset`` answers the same (202) whether or not the address has an
account; for a real account it stores the SHA-256 of a random token and sends a link (see
:mod:`gateway.mailer`) after the answer has gone, so the answer's timing does not depend on
the delivery. ``POST /v1/auth/password-reset/confirm`` takes the token once, before it
expires, sets the new password and ends every session of the account.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Request, Response
from sqlalchemy import select, update

from gateway import throttle
from gateway.account_schemas import ResetAccepted, ResetConfirm, ResetRequest
from gateway.deps import SessionDep, StateDep
from gateway.mailer import ResetDelivery, create_delivery
from gateway.models import AuthSession, PasswordReset, User
from gateway.security import check_password_rules, hash_password, sha256_hex
from shared import clock
from shared.errors import BadRequest, RateLimited, ValidationFailed, error_responses

log = logging.getLogger("irmi.gateway.reset")

router = APIRouter(prefix="/v1/auth/password-reset", tags=["auth"])

ACCEPTED = "If an account has this e-mail address, a link to reset its password is on its way."
INVALID = "This reset link is invalid, used or expired; ask for a new one."


async def _deliver(delivery: ResetDelivery, to: str, link: str, ttl_s: int) -> None:
    try:
        await delivery.send_reset(to, link, ttl_s)
    except Exception as exc:
        log.error("password reset delivery failed: %s", type(exc).__name__)


@router.post(
    "",
    operation_id="requestPasswordReset",
    response_model=ResetAccepted,
    status_code=202,
    summary="Ask for a password-reset link (same answer whether the account exists or not)",
    responses=error_responses(ValidationFailed, RateLimited),
)
async def request_reset(
    body: ResetRequest,
    request: Request,
    background: BackgroundTasks,
    state: StateDep,
    session: SessionDep,
) -> ResetAccepted:
    settings = state.settings
    now = clock.now()
    client = request.client.host if request.client else "unknown"
    # Per client, like failed logins: every request counts, so nobody floods mailboxes.
    counters = [
        throttle.Counter(
            "r:" + sha256_hex(client),
            settings.login_client_free_failures,
            settings.login_backoff_max_s,
        )
    ]
    wait = await throttle.admit(session, settings, counters, now)
    if wait > 0:
        raise RateLimited(
            "Too many reset requests; wait before trying again.",
            retry_after=max(1, math.ceil(wait)),
        )
    user = (
        await session.execute(select(User).where(User.email == body.email))
    ).scalar_one_or_none()
    token = secrets.token_urlsafe(32)
    digest = sha256_hex(token)
    if user is not None:
        latest = await session.scalar(
            select(PasswordReset.created_at)
            .where(PasswordReset.user_id == user.id)
            .order_by(PasswordReset.created_at.desc())
            .limit(1)
        )
        recent = latest is not None and now - latest < timedelta(
            seconds=settings.password_reset_interval_s
        )
        if not recent:
            ttl = settings.password_reset_ttl_s
            session.add(
                PasswordReset(
                    user_id=user.id,
                    token_hash=digest,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                )
            )
            link = f"{settings.public_url.rstrip('/')}/#/reset?token={token}"
            background.add_task(_deliver, create_delivery(settings), user.email, link, ttl)
    await session.commit()
    return ResetAccepted(message=ACCEPTED)


@router.post(
    "/confirm",
    operation_id="confirmPasswordReset",
    status_code=204,
    summary="Set a new password with the link's token (once); every session ends",
    responses=error_responses(BadRequest, ValidationFailed),
)
async def confirm_reset(body: ResetConfirm, state: StateDep, session: SessionDep) -> Response:
    now = clock.now()
    row = (
        await session.execute(
            select(PasswordReset, User)
            .join(User, User.id == PasswordReset.user_id)
            .where(PasswordReset.token_hash == sha256_hex(body.token))
        )
    ).first()
    if row is None:
        raise BadRequest(INVALID, details={"reason": "invalid_token"})
    reset, user = row
    if reset.used_at is not None or reset.expires_at <= now:
        raise BadRequest(INVALID, details={"reason": "invalid_token"})
    check_password_rules(body.password, user.email, state.settings.password_min_length)
    # Single use, atomically: two replicas cannot both take the same token.
    claimed = await session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise BadRequest(INVALID, details={"reason": "invalid_token"})
    user.password_hash = hash_password(body.password)
    # Every other outstanding link of this account dies too, and every session ends.
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason="password_reset")
    )
    await throttle.clear(session, [throttle.account_key(user.email)])
    await session.commit()
    return Response(status_code=204)
