"""Event streams over real HTTP, on SQLite and on PostgreSQL: open streams hold no database
connection (20 consultation streams used to freeze every other request), 300 streams held open
while uploads and ``/v1/users/me`` keep answering, caps answer 503 + Retry-After, and a stream
ends when its session is revoked or its access token expires. Latency figures: ``make load``
(``IRMI_LOAD_MODE=streams``), not here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login
from tests.imagegen import gradient, png_bytes
from tests.procs import Service
from tests.tb_service.svc_helpers import chest_png

CONSULTATIONS = "/v1/consultations/events"


class Streams:
    """Event streams held open by one client; each records its status, lines and its end."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tasks: list[asyncio.Task[None]] = []
        self.status: list[int | None] = []
        self.lines: list[list[str]] = []
        self.opened: list[asyncio.Event] = []
        self.ended: list[asyncio.Event] = []

    def open(self, url: str, token: str) -> int:
        i = len(self.tasks)
        self.status.append(None)
        self.lines.append([])
        self.opened.append(asyncio.Event())
        self.ended.append(asyncio.Event())
        self.tasks.append(asyncio.create_task(self._follow(i, url, token)))
        return i

    async def _follow(self, i: int, url: str, token: str) -> None:
        try:
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            async with self.client.stream("GET", url, headers=headers) as resp:
                self.status[i] = resp.status_code
                self.opened[i].set()
                async for line in resp.aiter_lines():
                    self.lines[i].append(line)
        finally:
            self.opened[i].set()
            self.ended[i].set()

    async def wait(self, events: list[asyncio.Event], limit_s: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), limit_s)
            return True
        except TimeoutError:
            return False

    def text(self, i: int) -> str:
        return "\n".join(self.lines[i])

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@asynccontextmanager
async def clients(base: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """One client for held streams (no read timeout), one for ordinary requests: a generous
    timeout that a frozen gateway (a 30 s wait for a pooled connection) still exceeds."""
    many = httpx.Limits(max_connections=400, max_keepalive_connections=50)
    streams = httpx.AsyncClient(base_url=base, limits=many, timeout=httpx.Timeout(30, read=None))
    calls = httpx.AsyncClient(base_url=base, limits=many, timeout=20)
    try:
        yield streams, calls
    finally:
        await streams.aclose()
        await calls.aclose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _terminal(c: httpx.AsyncClient, url: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = (await c.get(url, headers=_bearer(token))).json()
        if body["status"] in {"succeeded", "failed"} or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


def _mammogram(seed: int, marker: bytes = b"") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("L-CC", ("m.png", png_bytes(gradient(96 + seed, 96)) + marker, "image/png"))]


def test_held_streams_never_freeze_the_gateway(
    database_url: str, fakes: dict[str, Service], tmp_path: Path
) -> None:
    """20 consultation streams, then 300 streams in all (280 on running mammography studies),
    while chest and mammography uploads and /v1/users/me run: every answer 2xx, every exam
    succeeds, every stream stays open and gets its study's events."""
    fake = fakes["ok"].url
    env = gateway_env(tmp_path, database_url, fake, fake, IRMI_GATEWAY_STREAM_MAX_PER_USER="400")
    with run_gateway(env, tmp_path) as gw:
        token = signup_login(Api(gw.url), "p@example.org")["access_token"]
        asyncio.run(_held_streams(gw.url, token))


async def _held_streams(base: str, token: str) -> None:
    async with clients(base) as (sc, c):
        streams = Streams(sc)
        try:
            first = [streams.open(f"{CONSULTATIONS}?max_seconds=600", token) for _ in range(20)]
            await streams.wait([streams.opened[i] for i in first], 10)
            me = await c.get("/v1/users/me", headers=_bearer(token))  # froze before the fix
            assert me.status_code == 200, me.text
            assert await streams.wait([streams.opened[i] for i in first], 20)
            assert [streams.status[i] for i in first] == [200] * 20
            # 4 exams that stay running (the stand-in goes silent), 70 streams on each
            running = []
            for seed in range(4):
                r = await c.post(
                    "/v1/studies/mammography",
                    files=_mammogram(seed, b"FAKE:hang"),
                    headers=_bearer(token),
                )
                assert r.status_code == 202, r.text
                running.append(r.json()["events_url"])
            watched = [streams.open(running[i % 4], token) for i in range(280)]
            assert await streams.wait([streams.opened[i] for i in watched], 60)
            assert [streams.status[i] for i in watched] == [200] * 280
            # the load: uploads and /v1/users/me while 300 streams are held
            statuses: list[int] = []

            async def me_calls() -> None:
                for _ in range(10):
                    statuses.append(
                        (await c.get("/v1/users/me", headers=_bearer(token))).status_code
                    )

            async def chest(seed: int) -> None:
                png = chest_png(96, 96, seed=seed)
                r = await c.post(
                    "/v1/studies/chest",
                    files={"file": ("x.png", png, "image/png")},
                    headers=_bearer(token),
                )
                statuses.append(r.status_code)

            async def mammo(seed: int) -> dict[str, Any]:
                r = await c.post(
                    "/v1/studies/mammography", files=_mammogram(10 + seed), headers=_bearer(token)
                )
                statuses.append(r.status_code)
                assert r.status_code == 202, r.text
                return await _terminal(c, r.json()["study_url"], token)

            jobs: list[Any] = [me_calls() for _ in range(4)] + [chest(s) for s in range(8)]
            finished = await asyncio.gather(*(mammo(s) for s in range(4)), *jobs)
            assert statuses and all(200 <= s < 300 for s in statuses), statuses
            assert [study["status"] for study in finished[:4]] == ["succeeded"] * 4, finished[:4]
            # a new stream on a finished exam replays it, progress to result, and ends
            fresh = streams.open(finished[0]["events_url"], token)
            assert await streams.wait([streams.ended[fresh]], 30)
            text = streams.text(fresh)
            assert "event: progress" in text, text
            assert "event: result" in text
            # every held stream is still open, and each watcher got its exam's progress
            assert not any(streams.ended[i].is_set() for i in first + watched)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all("event: progress" in streams.text(i) for i in watched):
                    break
                await asyncio.sleep(0.2)
            assert all("event: progress" in streams.text(i) for i in watched)
        finally:
            await streams.close()


def test_stream_caps_revocation_expiry_and_no_url_token(
    database_url: str, fakes: dict[str, Service], tmp_path: Path
) -> None:
    """Per-user and per-server caps answer 503 overloaded + Retry-After; logout ends the
    session's streams, an expired access token ends its stream, and both free their slots; a
    token in the URL is refused on every stream route."""
    fake = fakes["ok"].url
    env = gateway_env(
        tmp_path,
        database_url,
        fake,
        fake,
        IRMI_GATEWAY_STREAM_MAX_PER_USER="2",
        IRMI_GATEWAY_STREAM_MAX_OPEN="3",
        IRMI_GATEWAY_ACCESS_TOKEN_TTL_S="6",
    )
    with run_gateway(env, tmp_path) as gw:
        anon = Api(gw.url)
        a = signup_login(anon, "a@example.org")
        signup_login(anon, "b@example.org")
        asyncio.run(_caps(gw.url, a))


async def _login(c: httpx.AsyncClient, email: str) -> dict[str, Any]:
    r = await c.post("/v1/auth/login", json={"email": email, "password": "s3cure-password"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _refused(r: httpx.Response, scope: str) -> None:
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    error = r.json()["error"]
    assert error["code"] == "overloaded" and error["details"]["scope"] == scope, error


async def _caps(base: str, a: dict[str, Any]) -> None:
    async with clients(base) as (sc, c):
        streams = Streams(sc)
        try:
            a = await _login(c, "a@example.org")  # a fresh token: 6 s to live
            mine = [streams.open(CONSULTATIONS, a["access_token"]) for _ in range(2)]
            assert await streams.wait([streams.opened[i] for i in mine], 10)
            assert [streams.status[i] for i in mine] == [200, 200]
            _refused(await c.get(CONSULTATIONS, headers=_bearer(a["access_token"])), "user")
            b = await _login(c, "b@example.org")
            theirs = streams.open(CONSULTATIONS, b["access_token"])
            assert await streams.wait([streams.opened[theirs]], 10)
            assert streams.status[theirs] == 200
            _refused(await c.get(CONSULTATIONS, headers=_bearer(b["access_token"])), "server")
            # logout: the session's streams end (revoked), the other user's stays open
            r = await c.post("/v1/auth/logout", json={"refresh_token": a["refresh_token"]})
            assert r.status_code == 204
            assert await streams.wait([streams.ended[i] for i in mine], 5)
            assert all(": end: revoked" in streams.text(i) for i in mine)
            assert not streams.ended[theirs].is_set()
            # B's access token expires: its stream ends (the client reconnects with a new one)
            assert await streams.wait([streams.ended[theirs]], 30)
            assert ": end: expired" in streams.text(theirs), streams.text(theirs)
            # the slots are free again; a token in the URL is refused on both stream routes
            a = await _login(c, "a@example.org")
            again = streams.open(CONSULTATIONS, a["access_token"])
            assert await streams.wait([streams.opened[again]], 10)
            assert streams.status[again] == 200
            study = "/v1/studies/" + "0" * 32 + "/events"
            for url in (CONSULTATIONS, study):
                r = await c.get(url, params={"access_token": a["access_token"]})
                assert r.status_code == 401, (url, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
        finally:
            await streams.close()
