"""Failure modes over real HTTP: upstream down or too slow -> 503 with Retry-After; a
bc_service that dies mid-exam -> the study ends failed (never stuck running); oversize
uploads -> 413 before the body is read; bad formats -> 415; request ids travel upstream."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.gateway.conftest import (
    Api,
    patient_api,
    run_gateway,
    sqlite_gateway_env,
    wait_status,
)
from tests.imagegen import gradient, pillow_bytes, png_bytes
from tests.procs import Service, free_port
from tests.tb_service.svc_helpers import chest_png

MAMMO = [("L-CC", ("a.png", png_bytes(gradient(128, 96)), "image/png"))]


def test_upstream_down_is_503_and_oversize_is_413(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = sqlite_gateway_env(
        tmp_path,
        dead,
        IRMI_GATEWAY_MAX_UPLOAD_BYTES="65536",
        IRMI_GATEWAY_UPSTREAM_RETRY_AFTER_S="7",
    )
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "p@example.org")
        xray = chest_png(64, 64)
        for path, files in [
            ("/v1/studies/chest", {"file": ("x.png", xray, "image/png")}),
            ("/v1/predict/chest", {"file": ("x.png", xray, "image/png")}),
            ("/v1/studies/mammography", MAMMO),
            ("/v1/predict/mammogram", MAMMO),
        ]:
            r = p.post(path, files=files)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["code"] == "service_unavailable"
            assert r.headers["retry-after"] == "7"
        assert p.get("/v1/studies").json()["total"] == 0  # nothing half-created

        # one file over the per-file limit
        big = b"\x89PNG\r\n\x1a\n" + b"\0" * 70_000
        r = p.post("/v1/studies/chest", files={"file": ("x.png", big, "image/png")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        # a declared body far over the request limit: refused from the headers alone
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/studies/chest HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 10000000000\r\n\r\n"
            )
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
            reply = raw.decode(errors="replace")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert "payload_too_large" in reply

        # a chunked body (no Content-Length) is cut as soon as it passes the limit
        def chunks() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
            for _ in range(100):
                yield b"\0" * 65536

        try:
            r = httpx.post(
                gw.url + "/v1/studies/chest",
                content=chunks(),
                headers={
                    "Content-Type": "multipart/form-data; boundary=b",
                    "Authorization": p.client.headers["Authorization"],
                },
                timeout=30,
            )
            assert r.status_code == 413, r.text
        except httpx.TransportError:
            pass  # the server may close the connection while the client is still sending
        # a GIF is refused by format before any upstream call
        gif = pillow_bytes(__import__("PIL.Image", fromlist=["Image"]).new("L", (32, 32)), "GIF")
        r = p.post("/v1/studies/chest", files={"file": ("x.gif", gif, "image/gif")})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_format"
        # readiness is about the database, not the upstreams
        assert httpx.get(gw.url + "/v2/health/ready").status_code == 200
    assert "<" not in gw.logs() or "PNG" not in gw.logs()  # no image bytes in the logs


def test_slow_or_dying_upstreams(fakes: dict[str, Service], tmp_path: Path) -> None:
    """tb_service too slow -> 503; bc_service silent mid-exam, or its connection breaking
    mid-exam (it died) every time -> the exam is re-submitted, then the study ends failed and
    its event stream ends with `error`; a bc_service lost once -> the retry succeeds."""
    fake = fakes["ok"]
    env = sqlite_gateway_env(
        tmp_path,
        fake.url,
        IRMI_GATEWAY_TB_TIMEOUT_S="2",
        IRMI_GATEWAY_BC_TIMEOUT_S="2",
        IRMI_GATEWAY_EXAM_ATTEMPTS="2",
        IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S="0.1",
    )
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "p@example.org")
        slow = chest_png(64, 64) + b"FAKE:hang"
        r = p.post("/v1/studies/chest", files={"file": ("x.png", slow, "image/png")})
        assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
        assert "retry-after" in r.headers
        for marker in (b"FAKE:hang", b"FAKE:die"):
            view = [("L-CC", ("a.png", png_bytes(gradient(128, 96)) + marker, "image/png"))]
            r = p.post("/v1/studies/mammography", files=view)
            assert r.status_code == 202, r.text
            accepted = r.json()
            # the event stream (served from the database) ends with the error event
            events = []
            with p.stream("GET", accepted["events_url"], timeout=60) as resp:
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        events.append(line.split(":", 1)[1].strip())
            assert "progress" in events and events[-1] == "error", (marker, events)
            assert events.count("retry") == 1, (marker, events)
            study = p.get(accepted["study_url"]).json()
            assert study["status"] == "failed", study
            assert study["error"]["code"] == "service_unavailable"
            assert "mammography service" in study["error"]["message"]
            assert study["error"]["details"]["attempts"] == 2
        # a 4xx from bc_service (a bad image) fails at once: no retry
        view = [("L-CC", ("c.png", png_bytes(gradient(90, 90)) + b"FAKE:reject", "image/png"))]
        r = p.post("/v1/studies/mammography", files=view)
        assert r.status_code == 202, r.text
        study = wait_status(p, r.json()["study_url"])
        assert study["status"] == "failed" and study["error"]["code"] == "not_a_mammogram", study
        with p.stream("GET", r.json()["events_url"], timeout=60) as resp:
            assert "event: retry" not in "".join(resp.iter_text())
        # lost once, then re-submitted from the stored image: the exam succeeds
        view = [("R-CC", ("b.png", png_bytes(gradient(100, 90)) + b"FAKE:flaky", "image/png"))]
        r = p.post("/v1/studies/mammography", files=view)
        assert r.status_code == 202, r.text
        study = wait_status(p, r.json()["study_url"])
        assert study["status"] == "succeeded", study
        assert study["mammography_result"]["views"][0]["tag"] == "R-CC"  # the tag travelled
        with p.stream("GET", r.json()["events_url"], timeout=60) as resp:
            text = "".join(resp.iter_text())
        assert "event: retry" in text and "event: result" in text
        # request ids travel to the upstream
        r = p.post(
            "/v1/studies/chest",
            files={"file": ("x.png", chest_png(64, 64), "image/png")},
            headers={"X-Request-ID": "trace-me-42"},
        )
        assert r.status_code == 201 and r.headers["x-request-id"] == "trace-me-42"
        assert "trace-me-42" in httpx.get(fake.url + "/_debug/request-ids").json()
    for line in gw.logs().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            assert "p@example.org" not in json.dumps(rec)


def test_stopped_replica_hands_its_exam_over(fakes: dict[str, Service], tmp_path: Path) -> None:
    """Two gateway replicas on one database and image store: the replica relaying an exam is
    stopped (SIGTERM) mid-exam; it leaves the study running, and the other replica adopts it
    (its lease expired), re-submits it from the stored images, and the exam succeeds."""
    fake = fakes["ok"]
    env = sqlite_gateway_env(
        tmp_path,
        fake.url,
        IRMI_GATEWAY_JWT_SECRET="shared-secret-0123456789abcdef0123456789",
        IRMI_GATEWAY_RELAY_LEASE_S="2",
        IRMI_GATEWAY_RELAY_SWEEP_S="0.3",
        IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S="0.1",
    )
    with run_gateway(env, tmp_path / "a") as a, run_gateway(env, tmp_path / "b") as b:
        pa = patient_api(a.url, "p@example.org")
        pb = Api(b.url, token=pa.client.headers["Authorization"].split(" ", 1)[1])
        view = [("L-MLO", ("a.png", png_bytes(gradient(120, 90)) + b"FAKE:slow", "image/png"))]
        r = pa.post("/v1/studies/mammography", files=view)
        assert r.status_code == 202, r.text
        url = r.json()["study_url"]
        wait_status(pb, url, {"running"}, limit_s=30)
        a.stop()
        assert pb.get(url).json()["status"] == "running"  # not failed by the shutdown
        study = wait_status(pb, url)
        assert study["status"] == "succeeded", study
        assert study["mammography_result"]["views"][0]["tag"] == "L-MLO"
        with pb.stream("GET", r.json()["events_url"], timeout=60) as resp:
            text = "".join(resp.iter_text())
        assert "event: retry" in text and '"reason":"relay_lost"' in text
