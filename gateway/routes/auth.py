"""Sign-up, login, token refresh (rotating), logout; the current user; API keys."""

from __future__ import annotations

import math
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway import throttle
from gateway.deps import SessionDep, StateDep, UserDep
from gateway.keycache import announce_revocation
from gateway.models import ApiKey, AuthSession, RefreshToken, User
from gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyPublic,
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    TokenPair,
    UserPublic,
)
from gateway.security import (
    check_password_rules,
    hash_password,
    issue_access_token,
    needs_rehash,
    new_api_key,
    new_refresh_token,
    sha256_hex,
    verify_password,
)
from gateway.state import GatewayState
from shared import clock
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
    error_responses,
)

router = APIRouter(prefix="/v1", tags=["auth"])
keys_router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

AUTH_ERRORS = error_responses(Unauthorized)
TOO_MANY_LOGINS = "Too many failed logins; wait before trying again."


def user_public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


async def _issue_pair(
    state: GatewayState, session: SessionDep, user: User, auth_session: AuthSession
) -> TokenPair:
    refresh = new_refresh_token()
    session.add(RefreshToken(session_id=auth_session.id, token_hash=sha256_hex(refresh)))
    await session.commit()
    ttl = state.settings.access_token_ttl_s
    access, _ = issue_access_token(
        state.jwt_secret, state.settings.jwt_issuer, user.id, user.role, auth_session.id, ttl
    )
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in=ttl, user=user_public(user)
    )


@router.post(
    "/auth/signup",
    operation_id="signUp",
    response_model=UserPublic,
    status_code=201,
    summary="Create a patient or doctor account (doctors stay pending until verified)",
    responses=error_responses(ValidationFailed, Conflict),
)
async def signup(body: SignupRequest, state: StateDep, session: SessionDep) -> UserPublic:
    check_password_rules(body.password, body.email, state.settings.password_min_length)
    if body.role == "doctor":
        if body.specialty is None or body.licence_number is None:
            raise ValidationFailed(
                "A doctor needs a specialty and a licence number.",
                details={"fields": ["specialty", "licence_number"]},
            )
    elif body.specialty is not None or body.licence_number is not None:
        raise ValidationFailed("Only doctors have a specialty and a licence number.")
    user = User(
        email=body.email,
        password_hash=hash_password(body.password),
        role=body.role,
        full_name=body.full_name,
        specialty=body.specialty,
        licence_number=body.licence_number,
        doctor_status="pending" if body.role == "doctor" else None,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("An account with this e-mail already exists.") from exc
    return user_public(user)


@router.post(
    "/auth/login",
    operation_id="logIn",
    response_model=TokenPair,
    summary="Log in: a short-lived access token and a single-use refresh token",
    responses=error_responses(Unauthorized, RateLimited),
)
async def login(
    body: LoginRequest, request: Request, state: StateDep, session: SessionDep
) -> TokenPair:
    settings = state.settings
    client = request.client.host if request.client else "unknown"
    counters = throttle.login_counters(settings, body.email, client)
    now = clock.now()
    wait = await throttle.admit(session, settings, counters, now)
    await session.commit()  # the attempt is counted before the password is checked
    if wait > 0:
        # The same answer whether the account exists or not: the counters are per address.
        raise RateLimited(TOO_MANY_LOGINS, retry_after=max(1, math.ceil(wait)))
    user = (
        await session.execute(select(User).where(User.email == body.email))
    ).scalar_one_or_none()
    # Timing-safe: an unknown e-mail still costs one Argon2 verification.
    ok = verify_password(body.password, user.password_hash if user else None)
    if user is None or not ok:
        await throttle.failed(session, settings, counters, clock.now())
        await session.commit()
        raise Unauthorized("Wrong e-mail or password.", details={"reason": "credentials"})
    await throttle.succeeded(session, counters)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body.password)
    auth_session = AuthSession(
        user_id=user.id, expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s)
    )
    session.add(auth_session)
    await session.flush()
    return await _issue_pair(state, session, user, auth_session)


async def _find_refresh(session: SessionDep, token: str) -> tuple[RefreshToken, AuthSession, User]:
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == sha256_hex(token))
        )
    ).first()
    if row is None:
        raise Unauthorized("The refresh token is invalid.", details={"reason": "invalid"})
    refresh, auth_session, user = row
    return refresh, auth_session, user


@router.post(
    "/auth/refresh",
    operation_id="refreshTokens",
    response_model=TokenPair,
    summary="Trade a refresh token for a new pair (the old one stops working)",
    responses=AUTH_ERRORS,
)
async def refresh(body: RefreshRequest, state: StateDep, session: SessionDep) -> TokenPair:
    token, auth_session, user = await _find_refresh(session, body.refresh_token)
    now = clock.now()
    if auth_session.revoked_at is not None or auth_session.expires_at <= now:
        raise Unauthorized("This session has ended; log in again.", details={"reason": "revoked"})
    # Single use, enforced atomically so two replicas cannot both rotate the same token.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        # A used token came back: it was stolen or replayed. End the whole session.
        auth_session.revoked_at = now
        auth_session.revoke_reason = "refresh_reuse"
        await session.commit()
        raise Unauthorized(
            "This refresh token was already used; the session is revoked.",
            details={"reason": "reused"},
        )
    return await _issue_pair(state, session, user, auth_session)


@router.post(
    "/auth/logout",
    operation_id="logOut",
    status_code=204,
    summary="End the session of this refresh token (its access tokens stop working too)",
    responses=AUTH_ERRORS,
)
async def logout(body: RefreshRequest, session: SessionDep) -> Response:
    _, auth_session, _ = await _find_refresh(session, body.refresh_token)
    if auth_session.revoked_at is None:
        auth_session.revoked_at = clock.now()
        auth_session.revoke_reason = "logout"
        await session.commit()
    return Response(status_code=204)


@router.get(
    "/users/me",
    operation_id="getCurrentUser",
    response_model=UserPublic,
    tags=["users"],
    summary="The logged-in user",
    responses=error_responses(Unauthorized, Forbidden),
)
async def me(user: UserDep) -> UserPublic:
    return user_public(user)


# ----------------------------------------------------------------------------- API keys
def key_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(key, from_attributes=True)


@keys_router.post(
    "",
    operation_id="createApiKey",
    response_model=ApiKeyCreated,
    status_code=201,
    summary="Create an API key (the key is shown once)",
    responses=error_responses(Unauthorized, Forbidden, ValidationFailed),
)
async def create_key(body: ApiKeyCreate, user: UserDep, session: SessionDep) -> ApiKeyCreated:
    key, prefix, digest = new_api_key()
    row = ApiKey(
        user_id=user.id,
        name=body.name,
        prefix=prefix,
        key_hash=digest,
        scopes=sorted(set(body.scopes)),
    )
    session.add(row)
    await session.commit()
    return ApiKeyCreated(**key_public(row).model_dump(), key=key)


@keys_router.get(
    "",
    operation_id="listApiKeys",
    response_model=ApiKeyList,
    summary="My API keys (never the keys themselves)",
    responses=error_responses(Unauthorized, Forbidden),
)
async def list_keys(user: UserDep, session: SessionDep) -> ApiKeyList:
    rows = await session.execute(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())
    )
    return ApiKeyList(items=[key_public(k) for k in rows.scalars()])


@keys_router.delete(
    "/{key_id}",
    operation_id="revokeApiKey",
    status_code=204,
    summary="Revoke an API key",
    responses=error_responses(Unauthorized, Forbidden, NotFound),
)
async def revoke_key(key_id: str, user: UserDep, session: SessionDep, state: StateDep) -> Response:
    row = await session.get(ApiKey, key_id)
    if row is None or row.user_id != user.id:
        raise NotFound("No such API key.")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        await announce_revocation(session, state.keys, row.prefix)  # gateway.keycache
        await session.commit()
        state.keys.drop(row.prefix)  # a request that read the key meanwhile cached it
    return Response(status_code=204)
