"""What the gateway's routes share, kept on ``app.state.gw``."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.settings import Settings
from gateway.store import ImageStore
from gateway.streams import StreamHub
from gateway.upstream import Upstreams


class SlidingWindowLimiter:
    """Attempts per key in the last ``window_s`` seconds (in memory, per replica)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def hit(self, key: str) -> float:
        """Record an attempt; return 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        hits = self._hits[key]
        while hits and now - hits[0] > self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return self.window_s - (now - hits[0])
        hits.append(now)
        if len(self._hits) > 50_000:  # bound memory under a flood of distinct keys
            self._hits = defaultdict(deque, {key: hits})
        return 0.0


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ImageStore
    upstreams: Upstreams
    login_limiter: SlidingWindowLimiter
    streams: StreamHub  # the process's event fan-out (one poller for all open streams)
    relays: set[asyncio.Task[None]] = field(default_factory=set)
    db_ok: bool = False
    store_ok: bool = False
    jwt_secret: str = ""
