"""Request body limits enforced while the body streams in, never after reading it whole.

:class:`BodyLimitMiddleware` refuses a request whose ``Content-Length`` exceeds the route's limit
before reading a byte of it, and counts the bytes of chunked bodies as they arrive: the moment
the count passes the limit it answers 413 ``payload_too_large`` and tells the application the
client went away, so nothing unbounded is buffered or spooled to disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.asgi import HttpMiddleware
from shared.errors import PayloadTooLarge

#: Maps a request scope to its body limit in bytes, or None for no limit.
LimitFor = Callable[[Scope], int | None]


def by_path(limits: dict[str, int], default: int | None = None) -> LimitFor:
    """Limit per exact path (``{"/v1/predict": 50_000_000}``), ``default`` elsewhere."""

    def limit_for(scope: Scope) -> int | None:
        return limits.get(str(scope.get("path", "")), default)

    return limit_for


_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def uniform(limit: int) -> LimitFor:
    """One limit for every request that may carry a body (GET/HEAD/OPTIONS are passed)."""

    def limit_for(scope: Scope) -> int | None:
        return None if scope.get("method") in _BODYLESS_METHODS else limit

    return limit_for


def _body_params(dependant: Dependant) -> Iterator[Any]:  # fastapi ModelField
    """A route's body fields, with those its dependencies declare (a form field read by a
    dependency makes the route an upload route too)."""
    yield from dependant.body_params
    for sub in dependant.dependencies:
        yield from _body_params(sub)


def upload_routes(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """The (path pattern, methods) of the routes taking a multipart form (``File``/``Form``)."""
    out = []
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        if any(isinstance(f.field_info, params.Form) for f in _body_params(route.dependant)):
            out.append((route.path_regex, frozenset(route.methods or ())))
    return out


def by_route(routes: Iterable[BaseRoute], uploads: int, other: int) -> LimitFor:
    """``uploads`` bytes for the routes that take files (read from their declarations, so a
    new upload route needs nothing here), ``other`` for every other request: a JSON route
    refuses a huge body before reading it instead of parsing it into a 422."""
    forms = upload_routes(routes)

    def limit_for(scope: Scope) -> int | None:
        path, method = str(scope.get("path", "")), scope.get("method")
        for pattern, methods in forms:
            if method in methods and pattern.match(path):
                return uploads
        return other

    return limit_for


class BodyLimitMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        super().__init__(app)
        self.limit_for = limit_for

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit, declared)
            return

        received = 0
        rejected = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    if not started:
                        await _send_413(send, limit, None)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # our 413 went out; the application's own answer is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise  # a disconnect we caused is not an error of the application


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int, declared: int | None) -> None:
    details: dict[str, object] = {"max_bytes": limit}
    if declared is not None:
        details["bytes"] = declared
    err = PayloadTooLarge(
        f"The request body exceeds {limit} bytes.",
        details=details,
    )
    body = err.envelope().model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
