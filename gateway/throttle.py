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

from sqlalchemy import case, delete, or_, select, update
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
    """[account from client, account, client]: the first two are cleared by a good login."""
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


async def record_failure(
    session: AsyncSession, settings: Settings, counters: list[Counter], now: datetime
) -> None:
    """Count one failure on each counter (atomically: concurrent replicas add up) and start
    the backoff of every counter past its free failures."""
    insert = _upsert(session.get_bind().dialect.name)
    forget = now - timedelta(seconds=settings.login_failure_window_s)
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
        ).returning(LoginThrottle.failures)
        failures = int((await session.execute(stmt)).scalar_one())
        if failures >= counter.free:
            wait = min(
                counter.cap_s,
                settings.login_backoff_base_s * 2 ** min(failures - counter.free, 30),
            )
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == counter.key)
                .values(blocked_until=now + timedelta(seconds=wait))
            )
    if random.random() < 0.01:
        await _forget_old(session, settings, now)


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
