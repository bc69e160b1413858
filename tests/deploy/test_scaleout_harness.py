"""The scale-out harness itself, on real servers: PostgreSQL, SeaweedFS's S3 and nginx spreading
requests round robin over two replicas of an inference service, one of which is stopped midway
without a failed request. (The full patient flow over two replicas of everything is in
test_scaleout.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.deploy import scaleout
from tests.onnxgen import tiny_model_folder


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


def test_round_robin_and_replica_loss(tmp_path: Path) -> None:
    tiny_model_folder(tmp_path / "models", "tiny")
    env = {"IRMI_TB_MODELS_DIR": str(tmp_path / "models"), "IRMI_TB_REQUIRED_MODELS": '["tiny"]'}
    with (
        scaleout.replicas("tb_service", 2, env, log_dir=tmp_path / "logs") as tb,
        scaleout.nginx({"tb": tb.ports}) as lb,
    ):
        url = lb.url("tb")
        for _ in range(6):
            assert httpx.get(url + "/v2/models", timeout=10).status_code == 200
        used = lb.upstreams_used("tb")
        assert {u.rsplit(":", 1)[1] for u in used} == {str(p) for p in tb.ports}
        tb.stop(0)  # one replica goes away mid-run, as in a rolling update or a node drain
        for _ in range(6):
            r = httpx.get(url + "/v2/models", timeout=10)
            assert r.status_code == 200
            assert r.json()["models"][0]["name"] == "tiny"
        last = lb.upstreams_used("tb")[-6:]
        assert all(u.endswith(f":{tb.ports[1]}") for u in last)
