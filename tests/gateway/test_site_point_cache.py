"""The site point in force is read once per ``site_point_cache_s``, not per result; a change
made here applies at once, a change made elsewhere within the TTL; a read that raced a change
is not kept (gateway/validation/point_cache.py). Adoption and rollback through the API, and
every result after them, are tested end to end in test_validation.py."""

from __future__ import annotations

import asyncio

from gateway.validation.point_cache import SitePointCache
from gateway.validation.tables import SitePoint


def _point(version: int) -> SitePoint:
    return SitePoint(id=f"sp-{version}", modality="chest", version=version, status="active")


class Database:
    """What the database says, and how often it was asked."""

    def __init__(self, point: SitePoint | None) -> None:
        self.point, self.reads = point, 0

    async def read(self) -> SitePoint | None:
        self.reads += 1
        return self.point


async def test_the_point_is_read_once_per_ttl_and_cached_as_a_detached_copy() -> None:
    cache, db = SitePointCache(60.0), Database(_point(1))
    first = await cache.active("chest", db.read)
    second = await cache.active("chest", db.read)
    assert db.reads == 1 and first is second and first is not db.point
    assert first is not None and (first.id, first.version) == ("sp-1", 1)
    assert await cache.active("mammography", Database(None).read) is None  # per modality


async def test_no_point_in_force_is_cached_too() -> None:
    cache, db = SitePointCache(60.0), Database(None)
    assert await cache.active("chest", db.read) is None
    assert await cache.active("chest", db.read) is None
    assert db.reads == 1


async def test_a_change_here_applies_at_once() -> None:
    cache, db = SitePointCache(60.0), Database(_point(1))
    await cache.active("chest", db.read)
    db.point = _point(2)
    cache.changed("chest")
    got = await cache.active("chest", db.read)
    assert got is not None and got.version == 2


async def test_a_change_elsewhere_applies_within_the_ttl() -> None:
    cache, db = SitePointCache(0.2), Database(_point(1))
    await cache.active("chest", db.read)
    db.point = None  # rolled back on another replica
    assert await cache.active("chest", db.read) is not None  # still within the TTL
    await asyncio.sleep(0.25)
    assert await cache.active("chest", db.read) is None


async def test_a_read_that_raced_a_change_is_not_kept() -> None:
    cache = SitePointCache(60.0)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_old_read() -> SitePoint | None:
        started.set()
        await release.wait()
        return _point(1)  # what the database said before the change committed

    reader = asyncio.create_task(cache.active("chest", slow_old_read))
    await started.wait()
    cache.changed("chest")  # an adoption committed meanwhile
    release.set()
    assert (await reader) is not None
    new = Database(_point(2))
    got = await cache.active("chest", new.read)
    assert new.reads == 1 and got is not None and got.version == 2


async def test_a_zero_ttl_reads_every_time() -> None:
    cache, db = SitePointCache(0.0), Database(_point(1))
    await cache.active("chest", db.read)
    await cache.active("chest", db.read)
    assert db.reads == 2
