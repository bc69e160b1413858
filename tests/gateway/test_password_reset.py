"""Password reset by a one-time link, over HTTP against a real gateway process.

The request answers the same whether the address has an account; the link goes out by SMTP
(to a small SMTP sink this file runs on loopback) or, in dev mode, to the log with no other
personal data; the token is stored hashed, works once, expires, and the reset ends every
session of the account.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login
from tests.procs import Service, free_port

PASSWORD = "s3cure-password"
NEW_PASSWORD = "brand-new-passw0rd"
LINK = re.compile(r"(https?://\S+/#/reset\?token=([\w-]+))")


class SmtpSink:
    """A minimal SMTP server (RFC 5321 subset: HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
    on 127.0.0.1, in its own thread; every message received lands in ``messages``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say("220 sink ESMTP")
        rcpts: list[str] = []
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in {"HELO", "EHLO"}:
                say("250 sink")
            elif verb == "MAIL":
                rcpts = []
                say("250 OK")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
                say("250 OK")
            elif verb == "DATA":
                say("354 end with .")
                await writer.drain()
                lines = []
                while (data := await reader.readline()) not in {b".\r\n", b""}:
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.messages.append(email.message_from_bytes(b"".join(lines)))
                self.recipients.append(rcpts)
                say("250 OK queued")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:  # RSET, NOOP
                say("250 OK")
            await writer.drain()
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} messages, wanted {count}"


def body_of(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


@pytest.fixture
def smtp_gateway(fakes: dict[str, Service], tmp_path: Path) -> Iterator[dict[str, Any]]:
    with SmtpSink() as sink:
        env = gateway_env(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
            fakes["ok"].url,
            fakes["ok"].url,
            IRMI_GATEWAY_SMTP_HOST="127.0.0.1",
            IRMI_GATEWAY_SMTP_PORT=str(sink.port),
            IRMI_GATEWAY_SMTP_STARTTLS="false",
            IRMI_GATEWAY_SMTP_FROM="IRMI <no-reply@irmi.test>",
            IRMI_GATEWAY_PUBLIC_URL="https://irmi.test",
            IRMI_GATEWAY_PASSWORD_RESET_INTERVAL_S="0",
        )
        with run_gateway(env, tmp_path) as gw:
            yield {"api": Api(gw.url), "sink": sink, "db": tmp_path / "gw.db", "gw": gw}


def test_reset_by_smtp_link_once_and_sessions_end(smtp_gateway: dict[str, Any]) -> None:
    anon: Api = smtp_gateway["api"]
    sink: SmtpSink = smtp_gateway["sink"]
    pair = signup_login(anon, "forgetful@example.org")
    old = anon.as_token(pair["access_token"])
    assert old.get("/v1/users/me").status_code == 200

    known = anon.post("/v1/auth/password-reset", json={"email": "Forgetful@example.org"})
    unknown = anon.post("/v1/auth/password-reset", json={"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    sink.wait_for(1)
    time.sleep(0.5)
    assert len(sink.messages) == 1  # nothing for the unknown address
    msg = sink.messages[0]
    assert sink.recipients[0] == ["forgetful@example.org"] and "IRMI" in msg["Subject"]
    found = LINK.search(body_of(msg))
    assert found and found.group(1).startswith("https://irmi.test/#/reset?token=")
    token = found.group(2)

    # stored hashed only
    with sqlite3.connect(smtp_gateway["db"]) as conn:
        stored = conn.execute("SELECT token_hash FROM password_resets").fetchall()
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]

    confirm = "/v1/auth/password-reset/confirm"
    weak = anon.post(confirm, json={"token": token, "password": "short"})
    assert weak.status_code == 422  # the rules apply; the token is not spent
    assert anon.post(confirm, json={"token": "forged", "password": NEW_PASSWORD}).status_code == 400
    assert anon.post(confirm, json={"token": token, "password": NEW_PASSWORD}).status_code == 204
    again = anon.post(confirm, json={"token": token, "password": NEW_PASSWORD + "x"})
    assert (
        again.status_code == 400 and again.json()["error"]["details"]["reason"] == "invalid_token"
    )

    # every session ended; the old password is gone, the new one works
    assert old.get("/v1/users/me").status_code == 401
    r = anon.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401
    login = {"email": "forgetful@example.org", "password": PASSWORD}
    assert anon.post("/v1/auth/login", json=login).status_code == 401
    assert anon.post("/v1/auth/login", json={**login, "password": NEW_PASSWORD}).status_code == 200

    # an expired token is refused
    assert anon.post("/v1/auth/password-reset", json={"email": login["email"]}).status_code == 202
    sink.wait_for(2)
    late = LINK.search(body_of(sink.messages[1]))
    assert late
    past = (datetime.now(UTC) - timedelta(seconds=1)).replace(tzinfo=None).isoformat(" ")
    with sqlite3.connect(smtp_gateway["db"]) as conn:
        conn.execute("UPDATE password_resets SET expires_at = ? WHERE used_at IS NULL", (past,))
    r = anon.post(confirm, json={"token": late.group(2), "password": "another-passw0rd"})
    assert r.status_code == 400
    # the logs carry neither the address nor the link
    logs = smtp_gateway["gw"].logs()
    assert "forgetful@example.org" not in logs and token not in logs


def test_dev_mode_logs_the_link_and_nothing_personal(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    env = gateway_env(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}", fakes["ok"].url, fakes["ok"].url
    )
    with run_gateway(env, tmp_path) as gw:
        anon = Api(gw.url)
        signup_login(anon, "dev-user@example.org", full_name="Ada Lovelace")
        assert (
            anon.post("/v1/auth/password-reset", json={"email": "dev-user@example.org"}).status_code
            == 202
        )
        deadline = time.monotonic() + 20
        while not (found := LINK.search(gw.logs())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found, gw.logs()[-2000:]
        logs = gw.logs()
        assert "dev-user@example.org" not in logs and "Ada Lovelace" not in logs
        confirm = {"token": found.group(2), "password": NEW_PASSWORD}
        assert anon.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
