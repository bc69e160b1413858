"""What every route of every IRMI service must declare (the merge-time guard for new routes):
an explicit camelCase ``operation_id`` (never FastAPI's path-derived default), unique in its
document, and ``tags`` that the document describes; file parts are binary; every event
stream types its events; the error ``code`` is the registry's enum."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from shared.errors import error_codes
from shared.openapi import SSE_EXTENSION, SSE_MEDIA

CAMEL = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*$")


def _gateway() -> FastAPI:
    from gateway.app import create_app
    from gateway.settings import Settings

    return create_app(
        Settings(dev_mode=True, jwt_secret="conventions", database_url="sqlite+aiosqlite://")
    )


def _tb() -> FastAPI:
    from tb_service.app import create_app

    return create_app()


def _bc() -> FastAPI:
    from bc_service.app import create_app

    return create_app()


APPS = {"gateway": _gateway, "tb_service": _tb, "bc_service": _bc}


@pytest.fixture(scope="module", params=sorted(APPS))
def app(request: pytest.FixtureRequest) -> FastAPI:
    return APPS[request.param]()


def _documented_routes(app: FastAPI) -> Iterator[APIRoute]:
    pending: list[Any] = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            yield route


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_route_has_an_explicit_camel_case_operation_id_and_tags(app: FastAPI) -> None:
    described = {t["name"] for t in app.openapi().get("tags", [])}
    seen: dict[str, str] = {}
    for route in _documented_routes(app):
        where = f"{sorted(route.methods)} {route.path}"
        assert route.operation_id, f"{where}: give it an explicit operation_id= (camelCase)"
        assert CAMEL.fullmatch(route.operation_id), f"{where}: {route.operation_id!r}"
        assert route.operation_id not in seen, f"{where}: duplicate of {seen[route.operation_id]}"
        seen[route.operation_id] = where
        assert route.tags, f"{where}: give it tags=[...]"
        undescribed = {str(t) for t in route.tags} - described
        assert not undescribed, f"{where}: tags {undescribed} missing from the app's openapi_tags"
    assert seen


def _is_file(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "string" and schema.get("format") == "binary":
        return True
    if schema.get("type") == "array":
        return _is_file(schema.get("items", {}))
    return any(_is_file(s) for s in schema.get("anyOf", []))


def test_file_parts_are_binary(app: FastAPI) -> None:
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    for node in _walk(doc):
        if node.get("contentMediaType") == "application/octet-stream":
            assert node.get("format") == "binary", node
    uploads = 0
    for path, methods in doc["paths"].items():
        for op in methods.values():
            body = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if body is None:
                continue
            uploads += 1
            schema = body["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
            files = [name for name, prop in schema["properties"].items() if _is_file(prop)]
            assert files, f"{path}: no part is declared as a file (format: binary)"
    assert uploads, "every service has an upload route"


def test_every_event_stream_types_its_events(app: FastAPI) -> None:
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    streams = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for response in op["responses"].values():
                media = response.get("content", {}).get(SSE_MEDIA)
                if media is None:
                    continue
                streams += 1
                events = media.get(SSE_EXTENSION)
                assert events, f"{method.upper()} {path}: use shared.openapi.sse_response"
                for name, ref in events.items():
                    target = ref["$ref"].rsplit("/", 1)[-1]
                    assert target in schemas, f"{path} event {name}: {target} not in components"
    refs = {n["$ref"].rsplit("/", 1)[-1] for n in _walk(doc) if isinstance(n.get("$ref"), str)}
    assert refs <= set(schemas), refs - set(schemas)
    if doc["info"]["title"] != "IRMI chest X-ray service":
        assert streams, "the gateway and bc_service publish event streams"


def test_error_code_is_the_registry_enum(app: FastAPI) -> None:
    code = app.openapi()["components"]["schemas"]["ErrorBody"]["properties"]["code"]
    assert code["type"] == "string"
    assert code["enum"] == error_codes()
