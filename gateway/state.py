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
from gateway.validation.point_cache import SitePointCache


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
    # The site point in force per modality, read lately.
    site_points: SitePointCache = field(default_factory=lambda: SitePointCache(0.0))
    db_ok: bool = False
    store_ok: bool = False
    jwt_secret: str = ""
