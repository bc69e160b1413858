"""Accounts and tokens, in process (FastAPI TestClient): password rules, timing-safe login
with backoff per account and per client, refresh rotation with reuse detection, logout, API
keys shown once and stored hashed, security headers and CORS."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings

PASSWORD = "s3cure-password"


def make_client(tmp_path: Path, **overrides: object) -> TestClient:
    settings = Settings(
        dev_mode=True,
        jwt_secret="unit-test-secret-0123456789abcdef0123",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        store_dir=tmp_path / "images",
        cors_origins=["https://ui.example.org"],
        **overrides,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, login_free_failures=3, login_backoff_base_s=60) as c:
        yield c


def signup(c: TestClient, email: str = "a@example.org", **extra: object) -> dict:
    body = {"email": email, "password": PASSWORD, "full_name": "A", **extra}
    r = c.post("/v1/auth/signup", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def login(c: TestClient, email: str = "a@example.org", password: str = PASSWORD) -> dict:
    return c.post("/v1/auth/login", json={"email": email, "password": password}).json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_signup_rules(client: TestClient, tmp_path: Path) -> None:
    for bad in ["short1", "onlyletterslong", "1234567890123", "a" * 129 + "1"]:
        r = client.post(
            "/v1/auth/signup", json={"email": "x@example.org", "password": bad, "full_name": "X"}
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", bad
    r = client.post(
        "/v1/auth/signup", json={"email": "nope", "password": PASSWORD, "full_name": "X"}
    )
    assert r.status_code == 422
    user = signup(client, "Mixed@Example.org")
    assert user["email"] == "mixed@example.org" and user["role"] == "patient"
    assert (
        client.post(
            "/v1/auth/signup",
            json={"email": "mixed@example.org", "password": PASSWORD, "full_name": "Y"},
        ).status_code
        == 409
    )
    # doctors need a specialty from the fixed list and a licence number
    r = client.post(
        "/v1/auth/signup",
        json={"email": "d@example.org", "password": PASSWORD, "full_name": "D", "role": "doctor"},
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/auth/signup",
        json={
            "email": "d@example.org",
            "password": PASSWORD,
            "full_name": "D",
            "role": "doctor",
            "specialty": "astrology",
            "licence_number": "L-9",
        },
    )
    assert r.status_code == 422
    doc = signup(
        client, "d@example.org", role="doctor", specialty="breast_surgery", licence_number="L-9"
    )
    assert doc["specialty"] == "breast_surgery"
    assert client.get("/v1/specialties").json()["items"][0] == "radiology"
    # the password is stored as an Argon2id hash
    hashes = (
        sqlite3.connect(tmp_path / "auth.db").execute("SELECT password_hash FROM users").fetchall()
    )
    assert all(h.startswith("$argon2id$") for (h,) in hashes)


def test_login_lockout_and_refresh_rotation(client: TestClient) -> None:
    signup(client)
    r = client.post("/v1/auth/login", json={"email": "ghost@example.org", "password": PASSWORD})
    assert r.status_code == 401
    wrong = client.post(
        "/v1/auth/login", json={"email": "a@example.org", "password": "wrong-pass-1"}
    )
    assert wrong.status_code == 401 and wrong.json() == r.json()  # same answer: no enumeration
    pair = login(client)
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    me = client.get("/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == "a@example.org"

    # rotation: a refresh token works once; its reuse revokes the whole session
    new = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    assert new["refresh_token"] != pair["refresh_token"]
    reuse = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reuse.status_code == 401 and reuse.json()["error"]["details"]["reason"] == "reused"
    assert (
        client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code
        == 401
    )
    assert client.get("/v1/users/me", headers=bearer(new["access_token"])).status_code == 401

    # logout ends a session; other sessions stay
    s1, s2 = login(client), login(client)
    assert (
        client.post("/v1/auth/logout", json={"refresh_token": s1["refresh_token"]}).status_code
        == 204
    )
    assert client.get("/v1/users/me", headers=bearer(s1["access_token"])).status_code == 401
    assert client.get("/v1/users/me", headers=bearer(s2["access_token"])).status_code == 200

    # backoff after 3 failures in a row (from this client), even for the right password
    for _ in range(3):
        assert (
            client.post(
                "/v1/auth/login", json={"email": "a@example.org", "password": "wrong-pass-1"}
            ).status_code
            == 401
        )
    r = client.post("/v1/auth/login", json={"email": "a@example.org", "password": PASSWORD})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) > 0


def test_login_rate_limit_per_client(tmp_path: Path) -> None:
    """Failures from one client add up across accounts (password spraying)."""
    with make_client(tmp_path, login_client_free_failures=3, login_backoff_base_s=60) as c:
        codes = [
            c.post(
                "/v1/auth/login", json={"email": f"z{i}@example.org", "password": "x"}
            ).status_code
            for i in range(5)
        ]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]


def test_api_keys_shown_once_stored_hashed(client: TestClient, tmp_path: Path) -> None:
    signup(client)
    h = bearer(login(client)["access_token"])
    r = client.post(
        "/v1/api-keys", json={"name": "pacs", "scopes": ["predict", "studies"]}, headers=h
    )
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("irmi_") and created["scopes"] == ["predict", "studies"]
    listed = client.get("/v1/api-keys", headers=h).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    stored = (
        sqlite3.connect(tmp_path / "auth.db").execute("SELECT key_hash FROM api_keys").fetchone()[0]
    )
    assert created["key"] not in stored and len(stored) == 64
    assert (
        client.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=h).status_code
        == 422
    )
    assert (
        client.post("/v1/api-keys", json={"name": "x", "scopes": []}, headers=h).status_code == 422
    )
    key = {"X-API-Key": created["key"]}
    assert client.get("/v1/studies", headers=key).status_code == 200
    # a key cannot manage keys or act as a logged-in user
    assert client.get("/v1/api-keys", headers=key).status_code == 403
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=h).status_code == 204
    assert client.get("/v1/studies", headers=key).status_code == 401
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=bearer("x")).status_code == 401


def test_security_headers_cors_and_errors(client: TestClient) -> None:
    r = client.get("/v1/users/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    for name, value in {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }.items():
        assert r.headers[name] == value
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-request-id"]
    pre = client.options(
        "/v1/studies",
        headers={
            "Origin": "https://ui.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://ui.example.org"
    evil = client.options(
        "/v1/studies",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in evil.headers
    assert client.get("/v1/nope").json()["error"]["code"] == "not_found"
    ready = client.get("/v2/health/ready").json()
    assert ready["ready"] is True and ready["checks"]["database"] is True
