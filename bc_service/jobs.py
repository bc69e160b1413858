"""One exam job of bc_service: its state and its event log, followed by any number of readers.

Every state change appends an event to the exam's in-memory log; any number of followers (SSE
streams) read that log from any position, so a follower that disconnects changes nothing for
the job, and one that comes back with ``Last-Event-ID`` gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.batching import Ticket
from shared.contracts.mammo import Exam, ExamResult, ExamStatus

TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class ExamCancelled(BaseException):
    """Raised in the worker thread at a stage boundary once the exam is cancelled.

    A BaseException, so that a pipeline's ``except Exception`` cannot swallow it.
    """


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredEvent:
    id: int
    event: str
    data: str  # JSON text, serialised once


@dataclass(eq=False)
class ExamJob:
    id: str
    views: list[Any]
    decode_ms: dict[str, float]
    started_mono: float
    created_at: str = field(default_factory=now_iso)
    status: ExamStatus = "queued"
    finished_at: str | None = None
    finished_mono: float | None = None
    run_started_mono: float | None = None
    result: ExamResult | None = None
    error: dict[str, object] | None = None
    # Once finished: the Exam as JSON, kept once (it is also the `result` event's data); the
    # decoded images and the result model are dropped then, so a finished exam costs ~its JSON.
    final_json: str | None = None
    n_views: int = field(init=False, default=0)
    events: list[StoredEvent] = field(default_factory=list)
    percent: float = 0.0
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    ticket: Ticket | None = None  # its place in the manager's admission, until it ends
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.n_views = len(self.views)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started_mono) * 1000.0

    def snapshot(self) -> Exam:
        if self.final_json is not None:
            return Exam.model_validate_json(self.final_json)
        return Exam(
            id=self.id,
            status=self.status,
            created_at=self.created_at,
            finished_at=self.finished_at,
            result=self.result,
            error=self.error,
        )

    def emit(self, event: str, data: str) -> StoredEvent:
        """Append to the log and wake every follower. Event-loop thread only."""
        ev = StoredEvent(id=len(self.events) + 1, event=event, data=data)
        self.events.append(ev)
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()
        return ev

    async def follow(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Events with id > ``after``, live, until the ``result`` event has been yielded."""
        idx = max(0, after)
        while True:
            while idx < len(self.events):
                ev = self.events[idx]
                idx += 1
                yield ev
            if self.terminal:
                return
            await self._wake.wait()
