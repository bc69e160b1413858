"""Failed-login throttling with exponential backoff, its state in the database so that every
gateway replica sees the same counts.

Three counters per attempt: the account from this client (the tight one), the account from any
client (capped short, so an attacker elsewhere delays its owner by at most
``login_account_backoff_max_s``, never locks them out), and the client across accounts
(password spraying). From a counter's ``free``-th failure on, the next attempt waits, and
each further failure doubles the wait.
Unknown e-mail addresses are counted exactly like known ones: the answers never tell which
accounts exist. Counters are keyed by SHA-256, so the table holds no e-mail or address.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import LoginThrottle
from gateway.security import sha256_hex
from gateway.settings import Settings


@dataclass(frozen=True)
class Counter:
    key: str
    free: int
    cap_s: float


def login_counters(settings: Settings, email: str, client: str) -> list[Counter]:
    """[account from client, account, client]: a good login clears the first two."""
    return [
        Counter(
            "ac:" + sha256_hex(f"{email}\n{client}"),
            settings.login_free_failures,
            settings.login_backoff_max_s,
        ),
        Counter(
            "a:" + sha256_hex(email),
            settings.login_account_free_failures,
            settings.login_account_backoff_max_s,
        ),
        Counter(
            "c:" + sha256_hex(client),
            settings.login_client_free_failures,
            settings.login_backoff_max_s,
        ),
    ]


def account_key(email: str) -> str:
    return "a:" + sha256_hex(email)


async def retry_after(session: AsyncSession, counters: list[Counter], now: datetime) -> float:
    """Seconds until every counter allows another attempt (0: now)."""
    rows = await session.execute(
        select(LoginThrottle.blocked_until).where(
            LoginThrottle.key.in_([c.key for c in counters]),
            LoginThrottle.blocked_until > now,
        )
    )
    waits = [(until - now).total_seconds() for (until,) in rows.all() if until is not None]
    return max(waits, default=0.0)


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _wait(settings: Settings, counter: Counter, failures: int) -> float:
    return float(
        min(counter.cap_s, settings.login_backoff_base_s * 2 ** min(failures - counter.free, 30))
    )


async def admit(
    session: AsyncSession, settings: Settings, counters: list[Counter], now: datetime
) -> float:
    """Count this attempt on every counter BEFORE the password is checked, unless a counter is
    in backoff: 0 when admitted, else the seconds to wait. Counting first, atomically (a
    conditional upsert; the row stays locked until the caller commits), means that parallel
    attempts cannot all slip through before the first failure is recorded. The caller commits
    at once, then calls :func:`failed` or :func:`succeeded`."""
    wait = await retry_after(session, counters, now)
    if wait > 0:
        return wait
    insert = _upsert(session.get_bind().dialect.name)
    forget = now - timedelta(seconds=settings.login_failure_window_s)
    free = or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now)
    for counter in counters:
        stmt = insert(LoginThrottle).values(
            key=counter.key, failures=1, last_failure_at=now, blocked_until=None
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case(
                    (LoginThrottle.last_failure_at < forget, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
            where=free,
        ).returning(LoginThrottle.failures)
        failures = (await session.execute(stmt)).scalar_one_or_none()
        if failures is None:  # another replica started a backoff meanwhile
            await session.rollback()
            return max(1.0, await retry_after(session, counters, now))
        if failures >= counter.free:
            await _block(session, settings, counter, failures, now)
    if random.random() < 0.01:  # housekeeping now and then (not a security decision)
        await _forget_old(session, settings, now)
    return 0.0


async def failed(
    session: AsyncSession, settings: Settings, counters: list[Counter], now: datetime
) -> None:
    """The admitted attempt failed: the backoffs it started run from now (after the slow
    password check), not from its arrival."""
    rows = await session.execute(
        select(LoginThrottle.key, LoginThrottle.failures).where(
            LoginThrottle.key.in_([c.key for c in counters])
        )
    )
    counts: dict[str, int] = {key: int(n) for key, n in rows.all()}
    for counter in counters:
        failures = counts.get(counter.key, 0)
        if failures >= counter.free:
            await _block(session, settings, counter, failures, now)


async def succeeded(session: AsyncSession, counters: list[Counter]) -> None:
    """The admitted attempt succeeded: the account's counters (from this client, from any)
    are cleared; the client's counter gets this attempt back."""
    await clear(session, [c.key for c in counters[:-1]])
    client = counters[-1]
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == client.key)
        .values(
            failures=case((LoginThrottle.failures > 0, LoginThrottle.failures - 1), else_=0),
            blocked_until=case(
                (LoginThrottle.failures - 1 < client.free, null()),
                else_=LoginThrottle.blocked_until,
            ),
        )
    )


async def _block(
    session: AsyncSession, settings: Settings, counter: Counter, failures: int, now: datetime
) -> None:
    """Start (or restart from ``now``) the backoff of a counter at ``failures``."""
    until = now + timedelta(seconds=_wait(settings, counter, failures))
    await session.execute(
        update(LoginThrottle).where(LoginThrottle.key == counter.key).values(blocked_until=until)
    )


async def clear(session: AsyncSession, keys: list[str]) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


async def _forget_old(session: AsyncSession, settings: Settings, now: datetime) -> None:
    old = now - timedelta(seconds=settings.login_failure_window_s)
    await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < old,
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now),
        )
    )
