"""Routing to the inference services: one ``httpx.AsyncClient`` per upstream.

An upstream that is down or too slow becomes 503 ``service_unavailable`` with Retry-After;
its 4xx errors are passed on with their status and envelope; the request id travels along.

Idle pooled connections expire after ``upstream_keepalive_s``, kept below the services'
``http_keep_alive_s`` so the gateway never picks a connection the service is closing. A request
lost to a connection-level failure before any answer (a reused connection closed under it,
connection refused or reset) is sent once more, on a fresh connection.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.settings import Settings
from shared.errors import IRMIError, ServiceUnavailable
from shared.logs import request_id_var

log = logging.getLogger("irmi.gateway.upstream")

CARD_TTL_S = 300.0  # a model card changes only with a new model version (a restart)
UploadPart = tuple[str, tuple[str, bytes, str]]  # (field, (filename, bytes, media type))


class UpstreamError(IRMIError):
    """An error envelope received from an inference service, passed on as it came."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, details=details, headers=headers)
        self.status_code = status_code  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


def status_for_code(code: str) -> int:
    """The HTTP status of an envelope code (for errors that arrive inside an event stream)."""
    pending: list[type[IRMIError]] = [IRMIError]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls is not IRMIError:
            return 502 if cls.status_code == 500 else cls.status_code
        pending.extend(cls.__subclasses__())
    return 502


def _headers() -> dict[str, str]:
    rid = request_id_var.get()
    return {"X-Request-ID": rid} if rid and rid != "-" else {}


def envelope_error(service: str, resp: httpx.Response, retry_after: int) -> IRMIError:
    """Turn an upstream error response into the exception that carries it on."""
    try:
        body = resp.json()
        err = body["error"]
        code, message = str(err["code"]), str(err.get("message", ""))
        details = err.get("details") or {}
    except Exception:
        code, message, details = "processing_failed", f"{service} failed.", {}
    if resp.status_code == 503 or resp.status_code == 429:
        ra = resp.headers.get("Retry-After") or str(retry_after)
        return UpstreamError(resp.status_code, code, message, details, {"Retry-After": ra})
    if 400 <= resp.status_code < 500:
        return UpstreamError(resp.status_code, code, message, details)
    log.warning("upstream error", extra={"upstream": service, "status": resp.status_code})
    return UpstreamError(
        502, "processing_failed", f"{service} failed to process the request.", {"upstream": service}
    )


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


async def iter_sse(resp: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream body into events (comments and keep-alives skipped)."""
    event: str = "message"
    data: list[str] = []
    eid: str | None = None
    async for line in resp.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data), eid)
            event, data, eid = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            eid = value
    if data:
        yield SseEvent(event, "\n".join(data), eid)


# Failures of a request that got no answer and, as the inference routes are safe to repeat
# (predictions are stateless; an exam refused before its stream opened never started), may be
# sent once more. Timeouts are not among them: the service may still be working on it.
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


async def send_retrying(
    client: httpx.AsyncClient, request: httpx.Request, *, stream: bool = False
) -> httpx.Response:
    """``client.send`` that repeats the request once after a connection-level failure."""
    try:
        return await client.send(request, stream=stream)
    except RETRYABLE as exc:
        log.info(
            "upstream connection lost before an answer; sending again",
            extra={"upstream": str(client.base_url), "error": type(exc).__name__},
        )
        return await client.send(request, stream=stream)


def tls_verification(urls: Sequence[str]) -> ssl.SSLContext | bool:
    """What the upstream clients verify TLS with: one of httpx's default (verifying)
    contexts, shared by both, where an upstream is reached over https; ``False`` where none
    is, since then no TLS handshake can happen (the clients only send relative paths to their
    ``http://`` base URL and follow no redirects). httpx would otherwise load the CA bundle
    once per client at start-up, about 40 ms each, for connections that never use it."""
    if any(url.lower().startswith("https://") for url in urls):
        return httpx.create_ssl_context()
    return False


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        verify = tls_verification([settings.tb_url, settings.bc_url])
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=max(10, settings.upstream_max_connections // 4),
            keepalive_expiry=settings.upstream_keepalive_s,
        )
        connect = settings.upstream_connect_timeout_s
        self.tb = httpx.AsyncClient(
            base_url=settings.tb_url.rstrip("/"),
            timeout=httpx.Timeout(settings.tb_timeout_s, connect=connect, pool=connect),
            limits=limits,
            verify=verify,
        )
        self.bc = httpx.AsyncClient(
            base_url=settings.bc_url.rstrip("/"),
            timeout=httpx.Timeout(settings.bc_timeout_s, connect=connect, pool=connect),
            limits=limits,
            verify=verify,
        )

        self._cards: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    async def close(self) -> None:
        await self.tb.aclose()
        await self.bc.aclose()

    def unavailable(self, service: str, exc: Exception) -> ServiceUnavailable:
        log.warning(
            "upstream unavailable", extra={"upstream": service, "error": type(exc).__name__}
        )
        return ServiceUnavailable(
            f"The {service} inference service is unavailable or too slow; retry shortly.",
            retry_after=self.settings.upstream_retry_after_s,
            details={"upstream": service},
        )

    async def predict_chest(self, filename: str, data: bytes, media_type: str) -> bytes:
        """The raw JSON of a ChestPrediction (the caller validates it)."""
        request = self.tb.build_request(
            "POST", "/v1/predict", files={"file": (filename, data, media_type)}, headers=_headers()
        )
        try:
            resp = await send_retrying(self.tb, request)
        except httpx.HTTPError as exc:
            raise self.unavailable("tb_service", exc) from exc
        if resp.status_code != 200:
            raise envelope_error("tb_service", resp, self.settings.upstream_retry_after_s)
        return resp.content

    async def open_exam_stream(self, parts: Sequence[UploadPart]) -> httpx.Response:
        """Submit an exam in stream mode; the caller owns (and must close) the response."""
        request = self.bc.build_request(
            "POST",
            "/v1/exams",
            params={"stream": "true"},
            files=list(parts),
            headers={**_headers(), "Accept": "text/event-stream"},
        )
        try:
            resp = await send_retrying(self.bc, request, stream=True)
        except httpx.HTTPError as exc:
            raise self.unavailable("bc_service", exc) from exc
        if resp.status_code >= 300:
            try:
                await resp.aread()
            except httpx.HTTPError as exc:
                raise self.unavailable("bc_service", exc) from exc
            finally:
                await resp.aclose()
            raise envelope_error("bc_service", resp, self.settings.upstream_retry_after_s)
        return resp

    async def model_card(self, service: str, name: str) -> dict[str, Any] | None:
        """The model card a service serves now (``/v2/models/{name}``), cached a few minutes;
        None when the service does not know the model."""
        key = (service, name)
        cached = self._cards.get(key)
        if cached is not None and time.monotonic() - cached[0] < CARD_TTL_S:
            return cached[1]
        client = self.tb if service == "tb_service" else self.bc
        request = client.build_request("GET", f"/v2/models/{name}", headers=_headers())
        try:
            resp = await send_retrying(client, request)
        except httpx.HTTPError as exc:
            raise self.unavailable(service, exc) from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise envelope_error(service, resp, self.settings.upstream_retry_after_s)
        card: dict[str, Any] = resp.json()
        self._cards[key] = (time.monotonic(), card)
        return card

    async def ready(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/v2/health/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False
