"""Failed logins, over HTTP against two real gateway replicas sharing one database.

Known and unknown e-mail addresses get the same answers (no oracle); failures back off
exponentially per account and client, per account and per client, the counts live in the
database (a failure counted by one replica is enforced by the other), and an attacker cannot
keep the account's owner out for longer than ``login_account_backoff_max_s``; parallel
guesses are counted before their password is checked. Clients are told
apart by their source address: the tests bind to distinct loopback addresses (127.0.0.x).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Api, gateway_env, run_gateway, signup_login
from tests.procs import Service

PASSWORD = "s3cure-password"
SETTINGS = {
    "IRMI_GATEWAY_LOGIN_FREE_FAILURES": "3",
    "IRMI_GATEWAY_LOGIN_ACCOUNT_FREE_FAILURES": "6",
    "IRMI_GATEWAY_LOGIN_CLIENT_FREE_FAILURES": "1000",
    "IRMI_GATEWAY_LOGIN_BACKOFF_BASE_S": "3",
    "IRMI_GATEWAY_LOGIN_ACCOUNT_BACKOFF_MAX_S": "2",
}


@pytest.fixture
def replicas(
    database_url: str, fakes: dict[str, Service], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    env = gateway_env(tmp_path, database_url, fakes["ok"].url, fakes["ok"].url, **SETTINGS)
    with run_gateway(env, tmp_path / "a") as a, run_gateway(env, tmp_path / "b") as b:
        yield a.url, b.url


def client_at(base: str, address: str) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, transport=transport, timeout=60)


def attempt(c: httpx.Client, email: str, password: str) -> tuple[int, Any, int | None]:
    r = c.post("/v1/auth/login", json={"email": email, "password": password})
    retry = r.headers.get("retry-after")
    return r.status_code, r.json().get("error"), int(retry) if retry else None


def test_login_backoff_no_oracle_shared_by_replicas_owner_never_locked_out(
    replicas: tuple[str, str],
) -> None:
    url_a, url_b = replicas
    signup_login(Api(url_a), "known@example.org")
    with client_at(url_a, "127.0.0.2") as a, client_at(url_b, "127.0.0.2") as b:
        seen: dict[str, list[tuple[int, Any, int | None]]] = {}
        for email in ("known@example.org", "ghost@example.org"):
            answers = [attempt(a, email, "wrong-pass-1") for _ in range(3)]
            answers.append(attempt(b, email, PASSWORD))  # the other replica enforces it
            seen[email] = answers
        # the same statuses and bodies; only the seconds to wait may differ by a tick
        assert [strip(x) for x in seen["known@example.org"]] == [
            strip(x) for x in seen["ghost@example.org"]
        ]
        codes = [code for code, _, _ in seen["ghost@example.org"]]
        assert codes == [401, 401, 401, 429]
        error, retry = seen["known@example.org"][3][1:]
        assert error["code"] == "rate_limited" and retry is not None and 1 <= retry <= 3
        assert "locked" not in error["message"]

        # exponential: the next failure doubles the wait (3 s, then 6 s), on either replica
        waits = []
        for replica in (a, b):
            code, _, retry = attempt(replica, "ghost@example.org", PASSWORD)
            assert code == 429 and retry is not None
            waits.append(retry)
            time.sleep(retry + 0.2)
            assert attempt(replica, "ghost@example.org", "wrong-pass-1")[0] == 401
        assert waits[0] <= 3 < waits[1] <= 6, waits
    an_attacker_cannot_lock_the_owner_out(url_a, url_b)
    parallel_guesses_are_counted_before_checking(url_a, url_b)


def parallel_guesses_are_counted_before_checking(url_a: str, url_b: str) -> None:
    """20 wrong passwords sent at once, through both replicas: each attempt is counted before
    its password is checked, so no more than the free failures (3) are even tried."""
    signup_login(Api(url_a), "parallel@example.org")
    clients = [client_at(url_a if i % 2 else url_b, "127.0.0.50") for i in range(20)]
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = list(
                pool.map(lambda c: attempt(c, "parallel@example.org", "wrong-pass-1")[0], clients)
            )
    finally:
        for c in clients:
            c.close()
    assert codes.count(401) <= 3 and codes.count(401) + codes.count(429) == 20, codes


def strip(answer: tuple[int, Any, int | None]) -> tuple[int, Any]:
    code, error, _ = answer
    if error is not None:
        error = {
            **error,
            "details": {k: v for k, v in error["details"].items() if k != "retry_after"},
        }
    return code, error


def an_attacker_cannot_lock_the_owner_out(url_a: str, url_b: str) -> None:
    signup_login(Api(url_a), "victim@example.org")
    attackers = [client_at(url_a if i % 2 else url_b, f"127.0.0.{10 + i}") for i in range(8)]
    owner = client_at(url_b, "127.0.0.99")
    try:
        # 8 addresses, 2 wrong passwords each: past the account's free failures (6)
        for c in attackers:
            for _ in range(2):
                code, _, retry = attempt(c, "victim@example.org", "wrong-pass-1")
                assert code in {401, 429} and (retry or 0) <= 2
        # the owner, elsewhere, waits at most the account cap, never a 15-minute lock
        code, _, retry = attempt(owner, "victim@example.org", PASSWORD)
        if code == 429:
            assert retry is not None and retry <= 2
            time.sleep(retry)
            code = attempt(owner, "victim@example.org", PASSWORD)[0]
        assert code == 200
    finally:
        for c in [*attackers, owner]:
            c.close()
