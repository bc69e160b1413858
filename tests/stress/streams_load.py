"""``IRMI_LOAD_MODE=streams make load``: hold ``IRMI_LOAD_STREAMS`` (default 300) event streams
open on a gateway and measure ``GET /v1/users/me`` (p50/p95) idle and while they are held.

Half the streams follow running mammography exams (a stand-in bc_service keeps them running:
tests/gateway/fake_upstream.py, ``FAKE:hang``), half are consultation streams
(``IRMI_LOAD_STREAM_KIND=studies`` or ``consultations`` for one kind only). The gateway runs
with its production poll interval on a SQLite file, or on ``IRMI_LOAD_DATABASE_URL``. Loopback
only, bounded in count and time. The report is JSON; exit status 1 on any 5xx or a stream that
did not open."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.imagegen import gradient, png_bytes
from tests.procs import spawn, wait_ready
from tests.stress.system import signup, start_gateway, vm_rss_kib

SAMPLES = 300
CONCURRENCY = 4


async def _latencies(c: httpx.AsyncClient, count: int) -> tuple[list[float], list[int]]:
    times: list[float] = []
    statuses: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            r = await c.get("/v1/users/me")
            times.append((time.perf_counter() - start) * 1000)
            statuses.append(r.status_code)

    await asyncio.gather(*(worker(count // CONCURRENCY) for _ in range(CONCURRENCY)))
    return times, statuses


def _pcts(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=100)
    return {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "max_ms": round(max(times), 2)}


async def _hold(c: httpx.AsyncClient, url: str, opened: asyncio.Queue[int]) -> None:
    async with c.stream("GET", url, headers={"Accept": "text/event-stream"}) as resp:
        await opened.put(resp.status_code)
        async for _ in resp.aiter_lines():
            pass


async def measure(base: str, streams: int, pid: int) -> dict[str, Any]:
    token, _ = signup(base)
    auth = {"Authorization": f"Bearer {token}"}
    many = httpx.Limits(max_connections=streams + 20, max_keepalive_connections=20)
    report: dict[str, Any] = {"streams": streams}
    async with (
        httpx.AsyncClient(base_url=base, headers=auth, timeout=60, limits=many) as c,
        httpx.AsyncClient(
            base_url=base, headers=auth, timeout=httpx.Timeout(60, read=None), limits=many
        ) as sc,
    ):
        await _latencies(c, 40)  # warm up
        idle, idle_statuses = await _latencies(c, SAMPLES)
        report["idle"] = _pcts(idle)
        exams = []
        for seed in range(4):
            view = [
                ("L-CC", ("m.png", png_bytes(gradient(96 + seed, 96)) + b"FAKE:hang", "image/png"))
            ]
            r = await c.post("/v1/studies/mammography", files=view)
            r.raise_for_status()
            exams.append(r.json()["events_url"])
        opened: asyncio.Queue[int] = asyncio.Queue()
        consult = "/v1/consultations/events?max_seconds=3600"
        kind = os.environ.get("IRMI_LOAD_STREAM_KIND", "mixed")  # mixed | studies | consultations
        report["kind"] = kind
        urls = [
            consult
            if kind == "consultations" or (kind == "mixed" and i % 2)
            else exams[i % len(exams)]
            for i in range(streams)
        ]
        start = time.perf_counter()
        holders = [asyncio.create_task(_hold(sc, url, opened)) for url in urls]
        codes = [await asyncio.wait_for(opened.get(), 120) for _ in urls]
        report["open_s"] = round(time.perf_counter() - start, 2)
        report["streams_opened_200"] = codes.count(200)
        await asyncio.sleep(2)
        loaded, loaded_statuses = await _latencies(c, SAMPLES)
        report["held"] = _pcts(loaded)
        report["streams_still_open"] = sum(not t.done() for t in holders)
        report["gateway_rss_kib"] = vm_rss_kib(pid)
        for t in holders:
            t.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    statuses = idle_statuses + loaded_statuses
    report["users_me_statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    report["errors_5xx"] = sum(s >= 500 for s in statuses)
    return report


def main() -> int:
    streams = int(os.environ.get("IRMI_LOAD_STREAMS", "300"))
    tmp = Path(tempfile.mkdtemp(prefix="irmi-load-streams-"))
    database_url = (
        os.environ.get("IRMI_LOAD_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
    )
    fake = spawn("tests.gateway.fake_upstream", {"FAKE_MODE": "ok"}, log_dir=tmp)
    gw = None
    try:
        wait_ready(fake, timeout=60)
        gw = start_gateway(
            tmp,
            database_url,
            fake.url,
            fake.url,
            IRMI_GATEWAY_EVENTS_POLL_S="0.5",  # the production default (tests poll faster)
            IRMI_GATEWAY_STREAM_MAX_PER_USER=str(streams + 10),
            IRMI_GATEWAY_STREAM_MAX_OPEN=str(streams + 10),
        )
        report = asyncio.run(measure(gw.url, streams, gw.proc.pid))
    finally:
        if gw is not None:
            gw.stop()
        fake.stop()
    print(json.dumps(report, indent=2))
    ok = report["errors_5xx"] == 0 and report["streams_opened_200"] == streams
    print("streams held" if ok else "STREAMS LOAD FAILED", file=sys.stderr)
    return 0 if ok else 1
