"""Prometheus metrics: requests, latencies and per-stage timings, served at ``/metrics``.

A service started with several worker processes on one port (:mod:`shared.workers`) runs in
prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set before the workers
start, every worker writes its values there, and ``/metrics`` (whichever worker answers)
reads all of them: counters and histograms summed over the workers, gauges summed over the
live ones (``livesum``).
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.asgi import HttpMiddleware

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    """True in a worker of a multi-process service (the directory is set for it)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition: this process's ``registry``, or every worker's values."""
    if multiprocess_mode():
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
    return bytes(generate_latest(registry))


def process_exited() -> None:
    """Drop this worker's live gauges (called at shutdown in multiprocess mode)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServiceMetrics:
    """One registry per app, so several apps in one test process never collide."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "irmi_http_requests_total",
            "HTTP requests by route and status.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "irmi_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["service", "method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "irmi_http_requests_in_flight",
            "Requests in flight.",
            ["service"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.stage = Histogram(
            "irmi_stage_duration_seconds",
            "Processing time per pipeline stage.",
            ["service", "stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "irmi_errors_total",
            "Errors by code.",
            ["service", "code"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "irmi_queue_depth",
            "Items waiting in a work queue.",
            ["service", "queue"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "irmi_upload_bytes",
            "Bytes of multipart upload bodies read by the upload reader.",
            ["service"],
            registry=self.registry,
        )
        self.upload_in_flight = Gauge(
            "irmi_upload_bytes_in_flight",
            "Upload bytes held in memory (the in-flight budget in use).",
            ["service"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "irmi_batch_size",
            "Size of inference batches.",
            ["service", "model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def observe_stage(self, stage: str, ms: float) -> None:
        self.stage.labels(self.service, stage).observe(ms / 1000.0)

    def router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(exposition(self.registry), media_type=CONTENT_TYPE_LATEST)

        return router


class MetricsMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = self.metrics
        status = 500
        start = time.perf_counter()
        m.in_flight.labels(m.service).inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m.in_flight.labels(m.service).dec()
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = str(scope.get("method", ""))
            m.requests.labels(m.service, method, route, str(status)).inc()
            m.latency.labels(m.service, method, route).observe(time.perf_counter() - start)
