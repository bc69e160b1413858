"""The scale-out harness's servers on their own: PostgreSQL and SeaweedFS's S3 store and read
data, and the nginx template renders. (Replicas behind nginx are in test_scaleout.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import scaleout


@pytest.fixture(autouse=True)
def _harness() -> None:
    scaleout.require_harness()


def test_nginx_template_renders_every_service(tmp_path: Path) -> None:
    text = scaleout.render_nginx_conf(tmp_path, {"gateway": (9000, [1, 2]), "tb": (9001, [3])})
    assert "{{" not in text
    assert "upstream gateway {" in text and "server 127.0.0.1:2 " in text
    assert "listen 127.0.0.1:9001;" in text
    assert "proxy_buffering off;" in text  # SSE goes through unbuffered


async def test_postgres_on_loopback() -> None:
    import asyncpg

    with scaleout.postgres() as pg:
        assert pg.url.startswith("postgresql+asyncpg://")
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute("create table t (id int primary key, v text)")
            await conn.execute("insert into t values (1, 'x')")
            assert await conn.fetchval("select v from t where id = 1") == "x"
        finally:
            await conn.close()


def test_seaweedfs_s3_on_loopback() -> None:
    with scaleout.seaweed_s3("irmi-test") as s3:
        client = s3.client()
        body = bytes(range(256)) * 4096  # 1 MiB
        client.put_object(Bucket="irmi-test", Key="studies/1/image.png", Body=body)  # type: ignore[attr-defined]
        got = client.get_object(Bucket="irmi-test", Key="studies/1/image.png")  # type: ignore[attr-defined]
        assert got["Body"].read() == body
