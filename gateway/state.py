"""What the gateway's routes share, kept on ``app.state.gw``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.keycache import ApiKeyCache
from gateway.settings import Settings
from gateway.store import ImageStore
from gateway.streams import StreamHub
from gateway.upstream import Upstreams


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ImageStore
    upstreams: Upstreams
    streams: StreamHub  # the process's event fan-out (one poller for all open streams)
    relays: set[asyncio.Task[None]] = field(default_factory=set)
    keys: ApiKeyCache = field(default_factory=lambda: ApiKeyCache(0.0))  # API keys read lately
    db_ok: bool = False
    store_ok: bool = False
    jwt_secret: str = ""
