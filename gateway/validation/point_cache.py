"""The site point in force per modality, read from the database at most once a ``ttl_s``
instead of once per new result (every upload and integrator prediction reads it).

Staleness, stated: an adoption or rollback through the API applies at once on the replica
that made it (:meth:`SitePointCache.changed`, after its commit); on the other replicas within
``ttl_s`` (setting ``site_point_cache_s``, default 1 s), as does a row edited by hand. A read
that raced a change is not cached (a generation count), so the bound holds.

What is cached is a detached copy of the row (never a session's object) or ``None``: no site
point, the card's point applies.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.keycache import detached_copy
from gateway.validation.tables import SitePoint


@dataclass
class _Entry:
    point: SitePoint | None
    read_at: float  # time.monotonic() before the query was sent


class SitePointCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._generation = 0

    async def active(
        self, modality: str, read: Callable[[], Awaitable[SitePoint | None]]
    ) -> SitePoint | None:
        """The point in force for ``modality``: cached, or ``read()`` from the database."""
        entry = self._entries.get(modality)
        if entry is not None and time.monotonic() - entry.read_at <= self.ttl_s:
            return entry.point
        generation, read_at = self._generation, time.monotonic()
        row = await read()
        point = detached_copy(row) if row is not None else None
        if self.ttl_s > 0 and generation == self._generation:
            self._entries[modality] = _Entry(point, read_at)
        return point

    def changed(self, modality: str) -> None:
        """A point of ``modality`` was adopted or rolled back here (call after the commit)."""
        self._generation += 1
        self._entries.pop(modality, None)
