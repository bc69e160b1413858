"""The security the OpenAPI document declares per route is what the running gateway does:
a route that lists `APIKeyHeader` takes an API key (with the scopes), one that lists only
`HTTPBearer` refuses it with 403 (`api_key_refused`), one with no security needs no
credentials, and every other answers 401 without any. Checked for every operation of the
committed document against a real gateway, with no body (nothing is created)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.openapi_export import DEFAULT_PATH
from tests.gateway.conftest import Api, run_gateway, signup_login, sqlite_gateway_env
from tests.procs import Service


@pytest.fixture(scope="module")
def gw(fakes: dict[str, Service], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("openapi-security")
    with run_gateway(sqlite_gateway_env(tmp, fakes["ok"].url), tmp) as svc:
        yield svc


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    doc = json.loads(DEFAULT_PATH.read_text())
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "no-such-id", path), op)
        for path, methods in doc["paths"].items()
        for method, op in methods.items()
    ]


def _call(client: httpx.Client, method: str, path: str) -> tuple[int, dict[str, Any]]:
    with client.stream(method, path) as r:  # event streams: the status only, then close
        if r.headers.get("content-type", "").startswith("application/json"):
            r.read()
            return r.status_code, r.json()
        return r.status_code, {}


def test_declared_security_is_enforced(gw: Service) -> None:
    anon = Api(gw.url)
    tokens = signup_login(anon, "security@example.org")
    user = anon.as_token(tokens["access_token"])
    r = user.post("/v1/api-keys", json={"name": "all", "scopes": ["predict", "studies"]})
    assert r.status_code == 201, r.text
    keyed = anon.as_key(r.json()["key"])
    ops = _operations()
    assert len(ops) >= 30
    for method, path, op in ops:
        where = f"{method} {path} ({op['operationId']})"
        schemes = {name for req in op.get("security", []) for name in req}
        status, body = _call(anon.client, method, path)
        if schemes:
            assert status == 401, f"{where}: declares {schemes} but answered {status} anonymously"
        else:
            assert status != 401, f"{where}: declares no security but wants credentials"
            continue
        if not schemes <= {"HTTPBearer", "APIKeyHeader"}:
            continue  # another scheme: its own tests say what it takes
        status, body = _call(keyed.client, method, path)
        reason = body.get("error", {}).get("details", {}).get("reason")
        if "APIKeyHeader" in schemes:
            assert status != 401 and reason != "api_key_refused", f"{where}: {status} {body}"
        else:
            assert (status, reason) == (403, "api_key_refused"), f"{where}: {status} {body}"


def test_api_key_routes_declare_bearer_only() -> None:
    """The issue's example: /v1/api-keys declared API-key security that it refuses."""
    for method, path, op in _operations():
        if path.startswith("/v1/api-keys"):
            assert op["security"] == [{"HTTPBearer": []}], f"{method} {path}"
