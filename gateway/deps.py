"""FastAPI dependencies: database session, the caller (user token or API key), role checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.keycache import detached_copy
from gateway.models import ApiKey, AuditEvent, AuthSession, User
from gateway.security import decode_access_token, hashes_equal, parse_api_key, sha256_hex
from gateway.state import GatewayState
from shared import clock
from shared.errors import Forbidden, Unauthorized
from shared.logs import request_id_var

bearer_scheme = HTTPBearer(auto_error=False, description="Access token from /v1/auth/login.")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Integrator key from /v1/api-keys."
)


async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gw
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
# Closed as soon as the route function returns, before the response is sent: routes that answer
# with a long-lived stream use it, so that an open stream never holds a pooled connection.
ShortSessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@dataclass
class Principal:
    """Who is calling: a user with a session token, or a user's API key with its scopes."""

    user: User
    api_key: ApiKey | None = None
    session_id: str | None = None  # the login (AuthSession) behind a user token
    expires_at: datetime | None = None  # when the token stops being valid

    @property
    def scopes(self) -> set[str] | None:
        return None if self.api_key is None else set(self.api_key.scopes)

    @property
    def is_patient(self) -> bool:
        return self.user.role == "patient"

    @property
    def is_doctor(self) -> bool:
        return self.user.role == "doctor"


async def _resolve(
    state: GatewayState, session: AsyncSession, token: str | None, api_key: str | None
) -> Principal:
    if token:
        claims = decode_access_token(state.jwt_secret, state.settings.jwt_issuer, token)
        row = await session.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(User.id == claims.user_id, AuthSession.id == claims.session_id)
        )
        found = row.first()
        if found is None:
            raise Unauthorized("The access token is invalid.", details={"reason": "invalid"})
        user, auth_session = found
        if auth_session.revoked_at is not None:
            raise Unauthorized(
                "This session has ended; log in again.", details={"reason": "revoked"}
            )
        token_expiry = datetime.fromtimestamp(claims.expires_at, UTC)
        return Principal(
            user=user,
            session_id=auth_session.id,
            expires_at=min(token_expiry, auth_session.expires_at),
        )
    if api_key:
        prefix = parse_api_key(api_key)
        key = await _key_and_owner(state, session, prefix) if prefix is not None else None
        if key is not None and hashes_equal(key[0].key_hash, sha256_hex(api_key)):
            key_row, owner = key
            if key_row.revoked_at is not None:
                raise Unauthorized("This API key was revoked.", details={"reason": "revoked"})
            await _note_use(session, key_row)
            return Principal(user=owner, api_key=key_row)
        raise Unauthorized("The API key is invalid.", details={"reason": "invalid"})
    raise Unauthorized(headers={"WWW-Authenticate": "Bearer"})


async def _key_and_owner(
    state: GatewayState, session: AsyncSession, prefix: str
) -> tuple[ApiKey, User] | None:
    """The key with this prefix and its owner: from the cache (gateway.keycache, at most
    ``api_key_cache_s`` old), else from the database (then cached if valid)."""
    cached = state.keys.get(prefix)
    if cached is not None:
        return cached.key, cached.owner
    read_at = time.monotonic()
    key_row = (
        await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
    ).scalar_one_or_none()
    owner = await session.get(User, key_row.user_id) if key_row is not None else None
    if key_row is None or owner is None:
        return None
    key_copy, owner_copy = detached_copy(key_row), detached_copy(owner)
    state.keys.put(key_copy, owner_copy, read_at)
    return key_copy, owner_copy


async def _note_use(session: AsyncSession, key: ApiKey) -> None:
    """Record the key's use, at most one write a minute per key."""
    now = clock.now()
    last = key.last_used_at
    if last is None or now - last > timedelta(minutes=1):
        key.last_used_at = now  # the cached copy: the next minute writes nothing
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        await session.commit()


# The two ways to authenticate, as the OpenAPI document declares them.
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ApiKeyCredential = Annotated[str | None, Depends(api_key_scheme)]


async def get_principal(
    state: StateDep,
    session: SessionDep,
    bearer: BearerCredentials,
    api_key: ApiKeyCredential,
) -> Principal:
    token = bearer.credentials if bearer is not None else None
    return await _resolve(state, session, token, api_key)


async def get_stream_principal(
    state: StateDep,
    session: ShortSessionDep,
    bearer: BearerCredentials,
    api_key: ApiKeyCredential,
) -> Principal:
    """The caller of an event stream, read through a session that is closed before the stream
    starts. Headers only: a token in the URL would land in access logs and proxies."""
    token = bearer.credentials if bearer is not None else None
    return await _resolve(state, session, token, api_key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]

# Routes that refuse API keys still read the header, to answer 403 (not 401) to a key; it is
# not declared, so their OpenAPI security is the bearer token alone.
UndeclaredApiKey = Annotated[str | None, Header(alias="X-API-Key", include_in_schema=False)]
KEYS_REFUSED = "API keys may not call this route; log in as a user."


def _refuse_keys(principal: Principal) -> Principal:
    if principal.api_key is not None:
        raise Forbidden(KEYS_REFUSED, details={"reason": "api_key_refused"})
    return principal


async def get_user_principal(
    state: StateDep,
    session: SessionDep,
    bearer: BearerCredentials,
    api_key: UndeclaredApiKey = None,
) -> Principal:
    """The caller of a route for logged-in users only (an API key is refused with 403)."""
    token = bearer.credentials if bearer is not None else None
    return _refuse_keys(await _resolve(state, session, token, api_key))


async def get_stream_user(
    state: StateDep,
    session: ShortSessionDep,
    bearer: BearerCredentials,
    api_key: UndeclaredApiKey = None,
) -> Principal:
    """:func:`get_stream_principal` for a stream of logged-in users only."""
    token = bearer.credentials if bearer is not None else None
    return _refuse_keys(await _resolve(state, session, token, api_key))


UserPrincipalDep = Annotated[Principal, Depends(get_user_principal)]
StreamUser = Annotated[Principal, Depends(get_stream_user)]


def check_scope(principal: Principal, scope: str) -> Principal:
    scopes = principal.scopes
    if scopes is not None and scope not in scopes:
        raise Forbidden(
            f"This API key lacks the '{scope}' scope.", details={"required_scope": scope}
        )
    return principal


def require_scope(scope: str) -> object:
    async def dependency(principal: PrincipalDep) -> Principal:
        return check_scope(principal, scope)

    return Depends(dependency)


async def get_user(principal: UserPrincipalDep) -> User:
    """Routes that only a logged-in user (not an API key) may call."""
    return principal.user


UserDep = Annotated[User, Depends(get_user)]
StudiesPrincipal = Annotated[Principal, require_scope("studies")]
StreamPrincipal = Annotated[Principal, Depends(get_stream_principal)]
PredictPrincipal = Annotated[Principal, require_scope("predict")]


async def get_patient(user: UserDep) -> User:
    if user.role != "patient":
        raise Forbidden("Only patients may do this.", details={"required_role": "patient"})
    return user


async def get_doctor(user: UserDep) -> User:
    if user.role != "doctor":
        raise Forbidden("Only doctors may do this.", details={"required_role": "doctor"})
    return user


PatientDep = Annotated[User, Depends(get_patient)]
DoctorDep = Annotated[User, Depends(get_doctor)]


def audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    study_id: str | None,
    *,
    subject_user_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the session (committed with the request's unit of work).
    ``subject_user_id``: the account an action was about (an admin's decision on a doctor)."""
    session.add(
        AuditEvent(
            user_id=principal.user.id,
            api_key_id=principal.api_key.id if principal.api_key else None,
            action=action,
            study_id=study_id,
            request_id=request_id_var.get(),
            subject_user_id=subject_user_id,
            details=details,
        )
    )
