"""Event streams: one fan-out per gateway process.

Every open stream (``/v1/studies/{id}/events``, ``/v1/consultations/events``) is a
:class:`Subscriber` of a :class:`Feed`. One task per process (the hub's poller) reads the
database for all of them at once: per tick it checks that the streams' sessions and API keys
still stand, then asks each feed with subscribers to read what changed (one query per feed,
whatever the number of streams) and hand it to the subscribers' queues. A stream itself never
holds a database connection; it waits on its queue and is sent by ``sse-starlette``.

Caps per user and per process refuse a stream with 503 ``overloaded`` + Retry-After. A stream
ends when its login is revoked (logout, refresh-token reuse) or expires, when its access token
expires (the client reconnects with a fresh one), or when its feed says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from gateway.models import ApiKey, AuthSession
from gateway.settings import Settings
from shared.clock import now
from shared.errors import Overloaded

if TYPE_CHECKING:
    from gateway.deps import Principal

log = logging.getLogger("irmi.gateway.streams")

SEP = "\n"  # the gateway's streams have always used LF line ends
PING_S = 15
SEND_TIMEOUT_S = 30  # a reader that stops reading is dropped


def sse(
    event: str | None = None, data: str | None = None, id: str | None = None
) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=event, id=id, sep=SEP)


class Subscriber:
    """One open stream: its owner, the credential it was opened with, and its queue."""

    def __init__(self, principal: Principal, deadline: float | None) -> None:
        self.user_id = principal.user.id
        self.role = principal.user.role
        self.session_id = principal.session_id
        self.api_key_id = principal.api_key.id if principal.api_key is not None else None
        expiry = principal.expires_at.timestamp() if principal.expires_at else None
        limits = [t for t in (deadline, expiry) if t is not None]
        self.deadline = min(limits) if limits else None  # wall-clock seconds
        # why the stream ends at its deadline: the credential's expiry, or the asked duration
        self.deadline_reason = (
            "expired" if expiry is not None and expiry == self.deadline else "timeout"
        )
        self.queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
        self.ended: str | None = None

    def send(self, event: ServerSentEvent) -> None:
        if self.ended is None:
            self.queue.put_nowait(event)

    def end(self, reason: str) -> None:
        """Finish the stream after what is already queued."""
        if self.ended is None:
            self.ended = reason
            self.queue.put_nowait(None)


class Feed(Protocol):
    """A source of events for subscribers, read by the hub's poller."""

    def has_subscribers(self) -> bool: ...

    async def poll(self, session: AsyncSession) -> bool:
        """Read what changed and deliver it; True when there is more to read at once."""
        ...

    def drop(self, sub: Subscriber) -> None: ...


F = TypeVar("F", bound=Feed)


class StreamHub:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.poll_s = settings.events_poll_s
        self._subs: set[Subscriber] = set()
        self._per_user: Counter[str] = Counter()
        self._feeds: dict[str, Feed] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def open_streams(self) -> int:
        return len(self._subs)

    def feed(self, name: str, make: Callable[[], F]) -> F:
        """The process's feed called ``name``, made on first use."""
        found = self._feeds.get(name)
        if found is None:
            found = self._feeds[name] = make()
        return found  # type: ignore[return-value]

    # ------------------------------------------------------------------ subscriptions
    def open(self, principal: Principal, deadline: float | None = None) -> Subscriber:
        """Admit a stream under the caps (503 ``overloaded`` when over one)."""
        retry = self.settings.stream_retry_after_s
        if self._closed:
            raise Overloaded("The server is shutting down; reconnect shortly.", retry_after=retry)
        if self._per_user[principal.user.id] >= self.settings.stream_max_per_user:
            raise Overloaded(
                "You have too many event streams open; close one (another tab or device) "
                "or reconnect shortly.",
                retry_after=retry,
                details={"limit": self.settings.stream_max_per_user, "scope": "user"},
            )
        if len(self._subs) >= self.settings.stream_max_open:
            raise Overloaded(
                "Too many event streams are open on this server; reconnect shortly.",
                retry_after=retry,
                details={"limit": self.settings.stream_max_open, "scope": "server"},
            )
        sub = Subscriber(principal, deadline)
        self._subs.add(sub)
        self._per_user[sub.user_id] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="streams")
        return sub

    def wake(self) -> None:
        """Poll now (a new subscriber wants its backlog without waiting a tick)."""
        self._wake.set()

    def close(self, sub: Subscriber) -> None:
        """Forget a stream (idempotent): its slot is free again."""
        if sub not in self._subs:
            return
        self._subs.discard(sub)
        self._per_user[sub.user_id] -= 1
        if self._per_user[sub.user_id] <= 0:
            del self._per_user[sub.user_id]
        for feed in self._feeds.values():
            feed.drop(sub)
        sub.end("closed")

    def response(self, sub: Subscriber, retry_ms: int) -> EventSourceResponse:
        """The one way the gateway answers with a stream of ``sub``'s events."""
        return _HubResponse(self, sub, retry_ms)

    async def events(self, sub: Subscriber, retry_ms: int) -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(retry=retry_ms, sep=SEP)
            while True:
                timeout = None if sub.deadline is None else sub.deadline - time.time()
                if timeout is not None and timeout <= 0:
                    sub.end(sub.deadline_reason)
                    break
                try:
                    item = await asyncio.wait_for(sub.queue.get(), timeout)
                except TimeoutError:
                    continue  # the deadline check above ends it
                if item is None:
                    break
                yield item
            if sub.ended not in (None, "finished", "closed", "timeout"):
                yield ServerSentEvent(comment=f"end: {sub.ended}", sep=SEP)
        finally:
            self.close(sub)

    # ------------------------------------------------------------------ the poller
    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            self._wake.clear()
            more = False
            if self._subs:
                try:
                    more = await self._tick()
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("event poll failed (%d in a row)", failures)
                    await asyncio.sleep(min(5.0, self.poll_s * 2**failures))
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _tick(self) -> bool:
        async with self.sessions() as session:
            await self._end_revoked(session)
            more = False
            for feed in list(self._feeds.values()):
                if feed.has_subscribers():
                    more = await feed.poll(session) or more
            return more

    async def _end_revoked(self, session: AsyncSession) -> None:
        """End streams whose login was revoked or expired, or whose API key was revoked."""
        subs = list(self._subs)
        sids = {s.session_id for s in subs if s.session_id is not None}
        kids = {s.api_key_id for s in subs if s.api_key_id is not None}
        alive: set[str] = set()
        for chunk in _chunks(sids):
            rows = await session.execute(
                select(AuthSession.id).where(
                    AuthSession.id.in_(chunk),
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > now(),
                )
            )
            alive.update(rows.scalars())
        for chunk in _chunks(kids):
            rows = await session.execute(
                select(ApiKey.id).where(ApiKey.id.in_(chunk), ApiKey.revoked_at.is_(None))
            )
            alive.update(rows.scalars())
        for sub in subs:
            credential = sub.session_id or sub.api_key_id
            if credential is not None and credential not in alive:
                sub.end("revoked")

    async def aclose(self) -> None:
        """Shutdown: end every stream and stop the poller."""
        self._closed = True
        for sub in list(self._subs):
            sub.end("shutdown")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _chunks(ids: set[str], size: int = 500) -> list[list[str]]:
    items = sorted(ids)
    return [items[i : i + size] for i in range(0, len(items), size)]


class _HubResponse(EventSourceResponse):
    """An SSE response that frees its hub slot however it ends (also when the client left
    before the first byte, when the event generator never starts)."""

    def __init__(self, hub: StreamHub, sub: Subscriber, retry_ms: int) -> None:
        super().__init__(
            hub.events(sub, retry_ms),
            ping=PING_S,
            sep=SEP,
            send_timeout=SEND_TIMEOUT_S,
            headers={"Cache-Control": "no-store"},
        )
        self._hub, self._sub = hub, sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.close(self._sub)
