"""The gateway's upload routes read their multipart forms in memory through shared.uploads
(gateway/form_uploads.py), never through Starlette's parser, which spools every file over
1 MiB to a temporary file in the clear; the process's in-flight budget applies (503 with
Retry-After), and the per-file limit is enforced while the body streams in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette import datastructures
from starlette.formparsers import MultiPartParser

from tests.gateway.conftest import ADMIN_PASSWORD, create_admin_cli
from tests.gateway.test_auth import bearer, login, make_client, signup

NOT_AN_IMAGE = b"%PDF-1.4 " + bytes(range(256)) * 8192  # 2 MiB + 9 bytes, refused as a PDF


@pytest.fixture
def no_starlette_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: MultiPartParser) -> None:
        raise AssertionError("Starlette's multipart parser (it spools files to disk) ran")

    monkeypatch.setattr(MultiPartParser, "parse", refuse)


def _patient(client: TestClient) -> dict[str, str]:
    signup(client)
    return bearer(login(client)["access_token"])


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        yield c


@pytest.fixture
def no_thread_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette reads and closes an UploadFile it takes for a file on disk in a worker
    thread; the in-memory parts must not pay that hop."""

    async def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("an in-memory upload part was read through a worker thread")

    monkeypatch.setattr(datastructures, "run_in_threadpool", refuse)


@pytest.mark.usefixtures("no_starlette_parser", "no_thread_hop")
def test_a_large_chest_upload_is_read_in_memory(client: TestClient) -> None:
    r = client.post(
        "/v1/studies/chest",
        files={"file": ("film.dcm", NOT_AN_IMAGE, "application/dicom")},
        headers=_patient(client),
    )
    assert r.status_code == 415, r.text  # the route read the file and sniffed it
    assert r.json()["error"]["code"] == "unsupported_format"


@pytest.mark.usefixtures("no_starlette_parser")
def test_mammogram_views_and_integrator_predictions_are_read_in_memory(
    client: TestClient,
) -> None:
    h = _patient(client)
    r = client.post(
        "/v1/studies/mammography",
        files=[
            ("L-CC", ("a.png", NOT_AN_IMAGE, "image/png")),
            ("files", ("b.png", b"x", "image/png")),
        ],
        headers=h,
    )
    assert r.status_code == 415, r.text
    key = client.post("/v1/api-keys", json={"name": "k", "scopes": ["predict"]}, headers=h)
    assert key.status_code == 201, key.text
    r = client.post(
        "/v1/predict/chest",
        files={"file": ("film.png", NOT_AN_IMAGE, "image/png")},
        headers={"X-API-Key": key.json()["key"]},
    )
    assert r.status_code == 415, r.text


@pytest.mark.usefixtures("no_starlette_parser")
def test_validation_uploads_are_read_in_memory(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        create_admin_cli(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}", "root@example.org")
        h = bearer(login(client, "root@example.org", ADMIN_PASSWORD)["access_token"])
        run = client.post(
            "/v1/admin/validation-runs", json={"name": "x", "modality": "chest"}, headers=h
        )
        assert run.status_code == 201, run.text
        r = client.post(
            f"/v1/admin/validation-runs/{run.json()['id']}/uploads",
            files={"archive": ("set.zip", NOT_AN_IMAGE, "application/zip")},
            headers=h,
        )
    assert r.status_code == 400, r.text  # read (in memory), then refused: not a zip
    assert r.json()["error"]["message"] == "The upload is not a readable zip archive."


def _chest_upload(tmp_path: Path, **settings: Any) -> httpx.Response:
    """A patient's chest upload of a small non-image to a gateway built with ``settings``."""
    with make_client(tmp_path, **settings) as client:
        r: httpx.Response = client.post(
            "/v1/studies/chest",
            files={"file": ("film.png", NOT_AN_IMAGE, "image/png")},
            headers=_patient(client),
        )
    return r


def test_uploads_count_against_the_in_flight_budget(tmp_path: Path) -> None:
    r = _chest_upload(tmp_path, max_upload_bytes_in_flight=1024 * 1024)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "overloaded" and "Retry-After" in r.headers


def test_a_file_over_the_limit_is_refused_in_the_envelope(tmp_path: Path) -> None:
    r = _chest_upload(tmp_path, max_upload_bytes=1024 * 1024)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert r.json()["error"]["details"]["max_bytes"] == 1024 * 1024


def _api_routes(routes: list[Any]) -> list[Any]:
    """Every APIRoute, inside included routers too (FastAPI keeps them as their router)."""
    from fastapi.routing import APIRoute

    out = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            out += _api_routes(list(inner.routes))
        elif isinstance(r, APIRoute):
            out.append(r)
    return out


def test_every_route_with_a_form_body_reads_it_in_memory(tmp_path: Path) -> None:
    """A new upload route on a plain router would spool its files to disk again."""
    from fastapi import params

    from gateway.form_uploads import InMemoryFormRoute

    with make_client(tmp_path) as client:
        routes = _api_routes(list(client.app.routes))  # type: ignore[attr-defined]
    forms = [
        r
        for r in routes
        if r.body_field is not None and isinstance(r.body_field.field_info, params.Form)
    ]
    # chest and mammography studies and predictions, the validation uploads
    assert {r.path for r in forms} >= {
        "/v1/studies/chest",
        "/v1/studies/mammography",
        "/v1/predict/chest",
        "/v1/predict/mammogram",
        "/v1/admin/validation-runs/{run_id}/uploads",
    }
    assert [r.path for r in forms if not isinstance(r, InMemoryFormRoute)] == []
