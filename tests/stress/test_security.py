"""Security over real HTTP, beyond tests/gateway (authorization matrix with expired, tampered
and forged tokens; in-process lockout, rate limit, CORS; 413 on the gateway): here a gateway
process with a known secret and tight limits, in front of the session's real services.

Tokens: ``alg: none``, another algorithm, wrong issuer, wrong type, missing claims, a real
token after its expiry, a refresh token used as a bearer. Brute force: the per-address login
limit cannot be dodged with X-Forwarded-For, and an account locks whatever the address. File
names with path traversal never reach the file system. Oversize bodies on every service's
upload routes: 413 envelope from the headers alone. CORS: only the configured origins; the
internal services send no CORS headers at all."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.procs import Service
from tests.stress.system import PASSWORD, System, start_gateway
from tests.tb_service.svc_helpers import chest_png

SECRET = "security-secret-0123456789abcdef0123456789"
TTL_S = 4
LOGIN_PER_MINUTE = 8


@pytest.fixture(scope="module")
def gw(irmi_system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("security")
    svc = start_gateway(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'gw.db'}",
        irmi_system.tb.url,
        irmi_system.bc.url,
        IRMI_GATEWAY_JWT_SECRET=SECRET,
        IRMI_GATEWAY_ACCESS_TOKEN_TTL_S=str(TTL_S),
        IRMI_GATEWAY_LOGIN_CLIENT_FREE_FAILURES=str(LOGIN_PER_MINUTE),
        IRMI_GATEWAY_LOGIN_FREE_FAILURES="3",
        IRMI_GATEWAY_LOGIN_BACKOFF_BASE_S="60",
        IRMI_GATEWAY_MAX_UPLOAD_BYTES=str(256 * 1024),
    )
    svc.extra = {"tmp": tmp}  # type: ignore[attr-defined]
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def user(gw: Service) -> dict[str, Any]:
    email = f"sec-{uuid.uuid4().hex[:8]}@example.org"
    body = {"email": email, "password": PASSWORD, "full_name": "S"}
    assert httpx.post(gw.url + "/v1/auth/signup", json=body).status_code == 201
    r = httpx.post(gw.url + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    pair = r.json()
    # an API key (scope studies) for the tests that outlast the short access-token lifetime
    r = httpx.post(
        gw.url + "/v1/api-keys",
        json={"name": "sec", "scopes": ["studies"]},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )
    assert r.status_code == 201, r.text
    return {"email": email, "key": r.json()["key"], **pair}


def _me(gw: Service, token: str) -> httpx.Response:
    value = f"Bearer {token}" if token else "Bearer"
    return httpx.get(gw.url + "/v1/users/me", headers={"Authorization": value})


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_token_tampering_and_expiry(gw: Service, user: dict[str, Any]) -> None:
    good = user["access_token"]
    assert _me(gw, good).status_code == 200
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    bad = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg none, signature kept": ".".join(
            [_b64({"alg": "none", "typ": "JWT"}), _b64(claims), good.split(".")[2]]
        ),
        "HS512 with the secret": jwt.encode(claims, SECRET, "HS512"),
        "wrong issuer": jwt.encode({**claims, "iss": "someone-else"}, SECRET, "HS256"),
        "refresh type": jwt.encode({**claims, "typ": "refresh"}, SECRET, "HS256"),
        "no exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, SECRET, "HS256"),
        "no sid": jwt.encode({k: v for k, v in claims.items() if k != "sid"}, SECRET, "HS256"),
        "unknown session": jwt.encode({**claims, "sid": "0" * 32}, SECRET, "HS256"),
        "unknown user": jwt.encode({**claims, "sub": "0" * 32}, SECRET, "HS256"),
        "doctor role claimed": jwt.encode({**claims, "role": "doctor"}, SECRET, "HS256"),
        "expired": jwt.encode({**claims, "exp": now - 1, "iat": now - 60}, SECRET, "HS256"),
        "payload swapped": ".".join(
            [good.split(".")[0], _b64({**claims, "exp": now + 10**6}), good.split(".")[2]]
        ),
        "refresh token as bearer": user["refresh_token"],
        "empty": "",
        "garbage": "a.b.c",
    }
    for name, token in bad.items():
        r = _me(gw, token)
        if name == "doctor role claimed" and r.status_code == 200:
            # the role comes from the database, never from the token
            assert r.json()["role"] == "patient", name
            continue
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["error"]["code"] == "unauthorized", name
    # a real token stops working once its lifetime is over
    time.sleep(TTL_S + 1.5)
    r = _me(gw, good)
    assert r.status_code == 401 and r.json()["error"]["details"]["reason"] == "expired", r.text
    # ...and the refresh token still gets a new pair
    r = httpx.post(gw.url + "/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 200, r.text
    assert _me(gw, r.json()["access_token"]).status_code == 200


def test_path_traversal_in_file_names(gw: Service, user: dict[str, Any]) -> None:
    h = {"X-API-Key": user["key"]}
    tmp: Path = gw.extra["tmp"]  # type: ignore[attr-defined]
    before = {p for p in tmp.parent.rglob("*")}
    names = [
        "../../../../tmp/irmi-pwned.png",
        "..\\..\\..\\windows\\irmi-pwned.png",
        "/etc/irmi-pwned.png",
        "x/../../irmi-pwned.png",
        "%2e%2e%2fpwned.png",
        "nul\x00.png",
        "a" * 1000 + ".png",
    ]
    ids = []
    for i, name in enumerate(names):
        data = chest_png(seed=500 + i)
        r = httpx.post(
            gw.url + "/v1/studies/chest",
            files={"file": (name, data, "image/png")},
            headers=h,
            timeout=120,
        )
        assert r.status_code in {201, 400, 422}, (name, r.status_code, r.text)
        if r.status_code == 201:
            study = r.json()
            ids.append(study["id"])
            for img in study["images"]:
                assert (
                    "/" not in img["name"] and "\\" not in img["name"] and ".." not in img["name"]
                )
                assert httpx.get(gw.url + img["url"], headers=h).content == data
    assert ids, "no upload was accepted"
    # the store holds only content-addressed blobs; nothing appeared outside the test folders
    store = tmp / "images"
    for p in store.rglob("*"):
        if p.is_file():
            assert len(p.name) == 64 and all(c in "0123456789abcdef" for c in p.name), p
    created = {p for p in tmp.parent.rglob("*")} - before
    assert all(str(p).startswith(str(tmp)) for p in created), created
    assert not Path("/tmp/irmi-pwned.png").exists() and not Path("/etc/irmi-pwned.png").exists()
    # traversal in URL paths is a 404, never a file
    for path in [
        f"/v1/studies/{ids[0]}/heatmaps/..%2F..%2Fgw.db",
        f"/v1/studies/{ids[0]}/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/studies/..%2F..%2Fgw.db",
        "/web/..%2F..%2Fsettings.py",
        "/web/../../gateway/settings.py",
    ]:
        r = httpx.get(gw.url + path, headers=h)
        assert r.status_code in {404, 400}, (path, r.status_code)
        assert b"jwt_secret" not in r.content and b"SQLite" not in r.content


def _raw_post(port: int, path: str, length: int, ctype: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
            if b"\r\n\r\n" in raw and raw.rstrip().endswith(b"}"):
                break
    return raw.decode(errors="replace")


def test_oversize_bodies_on_every_service(irmi_system: System, gw: Service) -> None:
    huge = 10_000_000_000
    multipart = "multipart/form-data; boundary=b"
    for port, path, ctype in [
        (gw.port, "/v1/studies/chest", multipart),
        (gw.port, "/v1/studies/mammography", multipart),
        (gw.port, "/v1/predict/chest", multipart),
        (gw.port, "/v1/auth/login", "application/json"),
        (irmi_system.tb.port, "/v1/predict", multipart),
        (irmi_system.tb.port, "/v1/predict/batch", multipart),
        (irmi_system.tb.port, "/api/tb", "application/json"),
        (irmi_system.bc.port, "/v1/predict", multipart),
        (irmi_system.bc.port, "/v1/exams", multipart),
    ]:
        reply = _raw_post(port, path, huge, ctype)
        assert reply.startswith("HTTP/1.1 413"), (port, path, reply[:300])
        assert "payload_too_large" in reply, (path, reply[:300])
    for svc in (gw, irmi_system.tb, irmi_system.bc):
        assert httpx.get(svc.url + "/v2/health/ready").status_code == 200


def test_cors(irmi_system: System, gw: Service) -> None:
    allowed = "http://localhost:8000"  # the gateway's default allowed origin
    pre = httpx.options(
        gw.url + "/v1/studies",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == allowed
    for evil in ["https://evil.example", "null", "http://localhost:8000.evil.example"]:
        for method in ("OPTIONS", "GET"):
            r = httpx.request(
                method,
                gw.url + "/v1/specialties",
                headers={"Origin": evil, "Access-Control-Request-Method": "GET"},
            )
            assert r.headers.get("access-control-allow-origin") not in {evil, "*"}, (evil, method)
    # an actual cross-origin GET from the allowed origin: echoed, never "*"
    r = httpx.get(gw.url + "/v1/specialties", headers={"Origin": allowed})
    assert r.headers.get("access-control-allow-origin") == allowed
    # the inference services are internal: no CORS at all
    for svc in (irmi_system.tb, irmi_system.bc):
        r = httpx.options(
            svc.url + "/v1/predict",
            headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers, svc.name


def test_login_brute_force(gw: Service) -> None:
    """Runs last in this module: it spends the address's login budget."""
    email = f"victim-{uuid.uuid4().hex[:8]}@example.org"
    body = {"email": email, "password": PASSWORD, "full_name": "V"}
    assert httpx.post(gw.url + "/v1/auth/signup", json=body).status_code == 201
    codes = []
    for i in range(4):  # backoff after 3 failures, whatever the claimed address
        r = httpx.post(
            gw.url + "/v1/auth/login",
            json={"email": email, "password": f"wrong-password-{i}"},
            headers={"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.0.1.{i}"},
        )
        codes.append(r.status_code)
    assert codes[:3] == [401, 401, 401] and codes[3] == 429, codes
    r = httpx.post(gw.url + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) > 0  # backing off even with the right password
    # the per-address limit: spoofed forwarding headers do not buy new attempts
    seen_429 = 0
    for i in range(LOGIN_PER_MINUTE + 2):
        r = httpx.post(
            gw.url + "/v1/auth/login",
            json={"email": f"nobody{i}@example.org", "password": "whatever-123"},
            headers={"X-Forwarded-For": f"192.0.2.{i}", "Forwarded": f"for=198.51.100.{i}"},
        )
        assert r.status_code in {401, 429}, r.text
        seen_429 += r.status_code == 429
    assert seen_429 >= 2, seen_429
