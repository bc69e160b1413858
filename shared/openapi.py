"""What every IRMI OpenAPI document says the same way, so that client generators can use it.

- File parts are ``{"type": "string", "format": "binary"}``: FastAPI's OpenAPI 3.1 output
  describes an ``UploadFile`` with ``contentMediaType`` only, which generators
  (openapi-python-client, openapi-generator) read as text; :func:`install_openapi_hooks` adds
  the ``format`` they look for.
- File responses (images, heatmaps) name their media types with a binary schema
  (:func:`binary_response`).
- Event streams (``text/event-stream``) declare each event's ``data`` as a schema of
  ``components/schemas``, under the media type's ``x-sse-events`` extension (event name ->
  ``$ref``): :func:`sse_response`. The schemas are added to the document even where no other
  route uses them, so generated clients have their types.
- Error codes: ``ErrorBody.code`` is an ``enum`` of :func:`shared.errors.error_codes`.

Every route of every service has an explicit camelCase ``operation_id`` and ``tags``
(tests/shared/test_openapi_conventions.py enforces it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.errors import amend_openapi

SSE_MEDIA = "text/event-stream"
SSE_EXTENSION = "x-sse-events"
_REF = "#/components/schemas/{model}"
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}

# Every model that an ``sse_response`` names, by schema name: added to the documents.
_EVENT_MODELS: dict[str, type[BaseModel]] = {}


def sse_response(description: str, events: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    """The 200 response entry of an event-stream route whose events carry ``events``
    (event name -> the model of its JSON ``data``)."""
    for model in events.values():
        _EVENT_MODELS[model.__name__] = model
    names = ", ".join(f"`{name}` ({model.__name__})" for name, model in events.items())
    return {
        "description": f"{description}\n\nEvents (`data` is JSON; its schema per event name "
        f"in `{SSE_EXTENSION}`): {names}.",
        "content": {
            SSE_MEDIA: {
                "schema": {"type": "string"},
                SSE_EXTENSION: {
                    name: {"$ref": _REF.format(model=model.__name__)}
                    for name, model in events.items()
                },
            }
        },
    }


def binary_response(description: str, *media_types: str) -> dict[str, Any]:
    """A response entry whose body is a file of one of ``media_types``."""
    return {
        "description": description,
        "content": {m: {"schema": dict(BINARY)} for m in media_types},
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def declare_binary_parts(doc: dict[str, Any]) -> None:
    """``format: binary`` on every octet-stream string schema (file parts of uploads)."""
    for node in _walk(doc):
        if node.get("type") == "string" and node.get("contentMediaType") == (
            "application/octet-stream"
        ):
            node["format"] = "binary"


def add_event_schemas(doc: dict[str, Any]) -> None:
    """Add the schemas that the document's ``x-sse-events`` refer to (and what they use)."""
    wanted: set[str] = set()
    for node in _walk(doc.get("paths", {})):
        for ref in (node.get(SSE_EXTENSION) or {}).values():
            wanted.add(str(ref["$ref"]).rsplit("/", 1)[-1])
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    missing = sorted(name for name in wanted if name not in schemas)
    if not missing:
        return
    _, top = models_json_schema(
        [(_EVENT_MODELS[name], "serialization") for name in missing], ref_template=_REF
    )
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    declare_binary_parts(schemas)


def install_openapi_hooks(app: FastAPI) -> None:
    """Amend the app's document once, when it is first generated (see the module docstring)."""

    def amend(doc: dict[str, Any]) -> None:
        declare_binary_parts(doc)
        add_event_schemas(doc)

    amend_openapi(app, amend)
