"""The API-key cache: an integrator's key is looked up in the database once, not per request.

Staleness, stated: a cached key (with its owner) is trusted for at most ``api_key_cache_s``
seconds (default 1 s) after it was read, whatever changed in the database meanwhile and however
(a revocation, an admin suspending the owner, a row edited by hand). A revocation through the
API is faster still: the replica that revokes drops the key at once (in-process), and on
PostgreSQL it sends ``NOTIFY irmi_api_key_revoked`` in the revoking transaction, on which every
other replica drops it within milliseconds (:class:`RevocationListener`). A replica whose
listening connection is lost empties its cache and keeps the TTL bound until it is back.

What is cached are detached copies of the rows (never a session's objects, which another
request's rollback would expire); the key itself is still checked against its hash on every
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import ApiKey, User

log = logging.getLogger("irmi.gateway.keycache")

CHANNEL = "irmi_api_key_revoked"


def detached_copy(row: Any) -> Any:
    """A transient copy of an ORM row: its column values, bound to no session."""
    cls = type(row)
    return cls(**{c.key: getattr(row, c.key) for c in cls.__table__.columns})


@dataclass
class CachedKey:
    key: ApiKey
    owner: User
    read_at: float  # time.monotonic() when the database said so


class ApiKeyCache:
    """Key prefix → the key's row and its owner, each entry trusted ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedKey] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, prefix: str) -> CachedKey | None:
        entry = self._entries.get(prefix)
        if entry is None:
            return None
        if time.monotonic() - entry.read_at > self.ttl_s:
            self._entries.pop(prefix, None)
            return None
        return entry

    def put(self, key: ApiKey, owner: User, read_at: float) -> None:
        """Cache a valid (unrevoked) key read at ``read_at`` (before its query was sent);
        ``key`` and ``owner`` are :func:`detached_copy` copies."""
        if not self.enabled or key.revoked_at is not None:
            return
        self._entries[key.prefix] = CachedKey(key, owner, read_at)
        self._entries.move_to_end(key.prefix)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, prefix: str) -> None:
        self._entries.pop(prefix, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


async def announce_revocation(session: AsyncSession, cache: ApiKeyCache, prefix: str) -> None:
    """Drop ``prefix`` here; on PostgreSQL also tell the other replicas (delivered when the
    caller's transaction commits; call before ``commit``)."""
    cache.drop(prefix)
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": prefix})


class RevocationListener:
    """On PostgreSQL: one connection of its own that LISTENs for revocations and drops them
    from ``cache``; reconnects (emptying the cache) when the connection is lost."""

    def __init__(self, database_url: str, cache: ApiKeyCache, retry_s: float = 1.0) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql" and cache.enabled
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.cache = cache
        self.retry_s = retry_s
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="api-key-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, prefix: str) -> None:
        self.cache.drop(prefix)

    async def _run(self) -> None:
        import asyncpg

        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("revocation listener cannot connect: %s", type(exc).__name__)
                await asyncio.sleep(self.retry_s)
                continue
            try:
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.cache.clear()  # whatever was missed while not listening
                self.listening.set()
                await lost.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("revocation listener failed: %s", type(exc).__name__)
            finally:
                self.listening.clear()
                self.cache.clear()
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(self.retry_s)
