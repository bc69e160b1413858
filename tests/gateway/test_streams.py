"""Event streams over real HTTP, on SQLite and on PostgreSQL: open streams hold no database
connection (20 consultation streams used to freeze every other request), 300 streams held open
while uploads and ``/v1/users/me`` keep answering, caps answer 503 + Retry-After, and a stream
ends when its session is revoked or its access token expires. Latency figures: ``make load``
(``IRMI_LOAD_MODE=streams``), not here. One gateway per database serves the whole file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.security import decode_access_token, issue_access_token
from tests.gateway.conftest import (
    Api,
    create_pg_database,
    gateway_env,
    run_gateway,
    signup_login,
)
from tests.imagegen import gradient, png_bytes
from tests.procs import Service
from tests.tb_service.svc_helpers import chest_png

PER_USER, SERVER = 150, 300


@dataclass
class Gateway:
    url: str
    env: dict[str, str]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def gw(
    request: pytest.FixtureRequest,
    fakes: dict[str, Service],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """A gateway on SQLite, then on PostgreSQL (as ``database_url``), with the stand-in
    upstreams and caps of 150 streams a user, 300 in all."""
    tmp = tmp_path_factory.mktemp(f"streams-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'gateway.db'}"
    else:
        url = create_pg_database(request.getfixturevalue("postgres_server"))
    fake = fakes["ok"].url
    env = gateway_env(
        tmp,
        url,
        fake,
        fake,
        IRMI_GATEWAY_STREAM_MAX_PER_USER=str(PER_USER),
        IRMI_GATEWAY_STREAM_MAX_OPEN=str(SERVER),
    )
    with run_gateway(env, tmp) as svc:
        yield Gateway(svc.url, env)


CONSULTATIONS = "/v1/consultations/events"
PASSWORD = "s3cure-password"


class Streams:
    """Event streams held open by one client; each records its status, lines and its end."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tasks: list[asyncio.Task[None]] = []
        self.status: list[int | None] = []
        self.lines: list[list[str]] = []
        self.opened: list[asyncio.Event] = []
        self.ended: list[asyncio.Event] = []

    def open(self, url: str, token: str | None = None, key: str | None = None) -> int:
        i = len(self.tasks)
        self.status.append(None)
        self.lines.append([])
        self.opened.append(asyncio.Event())
        self.ended.append(asyncio.Event())
        headers = {"Accept": "text/event-stream"}
        headers.update(_bearer(token) if token else {"X-API-Key": key or ""})
        self.tasks.append(asyncio.create_task(self._follow(i, url, headers)))
        return i

    async def _follow(self, i: int, url: str, headers: dict[str, str]) -> None:
        try:
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


def test_held_streams_never_freeze_the_gateway(gw: Gateway) -> None:
    """20 consultation streams, then 300 streams in all (130 on running mammography exams),
    while chest and mammography uploads and /v1/users/me run: every answer 2xx, every exam
    succeeds, every stream stays open and gets its exam's events; the 301st stream, and a
    user's 151st, are refused with 503 overloaded + Retry-After."""
    anon = Api(gw.url)
    tokens = [signup_login(anon, f"{who}@example.org")["access_token"] for who in "pqr"]
    asyncio.run(_held_streams(gw.url, *tokens))


async def _held_streams(base: str, token: str, other: str, third: str) -> None:
    async with clients(base) as (sc, c):
        streams = Streams(sc)
        try:
            first = [streams.open(f"{CONSULTATIONS}?max_seconds=600", token) for _ in range(20)]
            await streams.wait([streams.opened[i] for i in first], 10)
            me = await c.get("/v1/users/me", headers=_bearer(token))  # froze before the fix
            assert me.status_code == 200, me.text
            assert await streams.wait([streams.opened[i] for i in first], 20)
            assert [streams.status[i] for i in first] == [200] * 20
            # 4 exams that stay running (the stand-in goes silent), watched by 130 streams
            running = []
            for seed in range(4):
                r = await c.post(
                    "/v1/studies/mammography",
                    files=_mammogram(seed, b"FAKE:hang"),
                    headers=_bearer(token),
                )
                assert r.status_code == 202, r.text
                running.append(r.json()["events_url"])
            watched = [streams.open(running[i % 4], token) for i in range(PER_USER - 20)]
            theirs = [streams.open(CONSULTATIONS, other) for _ in range(PER_USER)]
            held = first + watched + theirs
            assert len(held) == SERVER
            assert await streams.wait([streams.opened[i] for i in held], 60)
            assert [streams.status[i] for i in held] == [200] * SERVER
            # at the caps: a user's 151st stream, and anyone's 301st, are refused
            _refused(await c.get(CONSULTATIONS, headers=_bearer(token)), "user")
            _refused(await c.get(CONSULTATIONS, headers=_bearer(third)), "server")
            # the load: uploads and /v1/users/me while 300 streams are held
            statuses: list[int] = []

            async def me_calls() -> None:
                for _ in range(10):
                    r = await c.get("/v1/users/me", headers=_bearer(token))
                    statuses.append(r.status_code)

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
            assert len(statuses) == 52 and all(200 <= s < 300 for s in statuses), statuses
            assert [study["status"] for study in finished[:4]] == ["succeeded"] * 4, finished[:4]
            # every held stream is still open, and each watcher got its exam's progress
            assert not any(streams.ended[i].is_set() for i in held)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all("event: progress" in streams.text(i) for i in watched):
                    break
                await asyncio.sleep(0.2)
            assert all("event: progress" in streams.text(i) for i in watched)
        finally:
            await streams.close()
        # once the streams are gone their slots are free: a finished exam's stream replays it
        replay = await _open_when_free(c, finished[0]["events_url"], token)
        assert "event: progress" in replay and "event: result" in replay, replay
        ids = [line[4:] for line in replay.splitlines() if line.startswith("id: ")]
        # resumed with Last-Event-ID (or ?after=): only the events after that id
        for how in ({"Last-Event-ID": ids[-2]}, {"after": ids[-2]}):
            header = {k: v for k, v in how.items() if k == "Last-Event-ID"}
            query = {k: v for k, v in how.items() if k == "after"}
            r = await c.get(
                finished[0]["events_url"], params=query, headers={**_bearer(token), **header}
            )
            later = [line[4:] for line in r.text.splitlines() if line.startswith("id: ")]
            assert r.status_code == 200 and later == ids[-1:], (how, r.text)
            assert "event: result" in r.text


async def _open_when_free(c: httpx.AsyncClient, url: str, token: str) -> str:
    """Read a stream to its end, retrying while the server still counts closed streams
    (it frees a slot when it notices the client left)."""
    deadline = time.monotonic() + 20
    while True:
        r = await c.get(url, headers=_bearer(token))
        if r.status_code != 503 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r.text
        await asyncio.sleep(0.2)


def _refused(r: httpx.Response, scope: str) -> None:
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    error = r.json()["error"]
    assert error["code"] == "overloaded" and error["details"]["scope"] == scope, error


def test_stream_ends_on_revocation_and_expiry(gw: Gateway) -> None:
    """Logout ends that session's streams (not another session's); a stream opened with an
    access token ends when the token expires; revoking an API key ends the streams it opened;
    a token in the URL is refused on every stream route."""
    first = signup_login(Api(gw.url), "a@example.org")
    asyncio.run(_session_end(gw, first))


def _short_token(gw: Gateway, token: str, ttl_s: int) -> str:
    """The same login's access token, minted to expire in ``ttl_s`` (the test knows the key)."""
    secret = gw.env["IRMI_GATEWAY_JWT_SECRET"]
    claims = decode_access_token(secret, "irmi-gateway", token)
    short, _ = issue_access_token(
        secret, "irmi-gateway", claims.user_id, claims.role, claims.session_id, ttl_s
    )
    return short


async def _session_end(gw: Gateway, first: dict[str, Any]) -> None:
    async with clients(gw.url) as (sc, c):
        r = await c.post("/v1/auth/login", json={"email": "a@example.org", "password": PASSWORD})
        assert r.status_code == 200, r.text
        second = r.json()
        streams = Streams(sc)
        try:
            ended = [streams.open(CONSULTATIONS, first["access_token"]) for _ in range(2)]
            kept = streams.open(CONSULTATIONS, second["access_token"])
            expiring = streams.open(CONSULTATIONS, _short_token(gw, second["access_token"], 3))
            # an integrator's key follows a running exam
            auth = _bearer(second["access_token"])
            r = await c.post(
                "/v1/api-keys", json={"name": "ris", "scopes": ["studies"]}, headers=auth
            )
            assert r.status_code == 201, r.text
            key = r.json()
            r = await c.post(
                "/v1/studies/mammography", files=_mammogram(50, b"FAKE:hang"), headers=auth
            )
            assert r.status_code == 202, r.text
            by_key = streams.open(r.json()["events_url"], key=key["key"])
            everyone = [*ended, kept, expiring, by_key]
            assert await streams.wait([streams.opened[i] for i in everyone], 20)
            assert [streams.status[i] for i in everyone] == [200] * 5
            r = await c.delete(f"/v1/api-keys/{key['id']}", headers=auth)
            assert r.status_code == 204, r.text
            assert await streams.wait([streams.ended[by_key]], 20)
            assert ": end: revoked" in streams.text(by_key), streams.text(by_key)
            # logout: that session's streams end (revoked), the other session's stay open
            r = await c.post("/v1/auth/logout", json={"refresh_token": first["refresh_token"]})
            assert r.status_code == 204
            assert await streams.wait([streams.ended[i] for i in ended], 20)
            assert all(": end: revoked" in streams.text(i) for i in ended)
            # the short-lived token's stream ends when the token expires
            assert await streams.wait([streams.ended[expiring]], 30)
            assert ": end: expired" in streams.text(expiring), streams.text(expiring)
            assert not streams.ended[kept].is_set()
            # a token in the URL is refused on both stream routes
            study = "/v1/studies/" + "0" * 32 + "/events"
            for url in (CONSULTATIONS, study):
                r = await c.get(url, params={"access_token": second["access_token"]})
                assert r.status_code == 401, (url, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
        finally:
            await streams.close()
