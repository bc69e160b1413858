"""Service assembly: the FastAPI app skeleton every IRMI service shares, and its entry point."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI

from shared.concurrency import CpuPool
from shared.errors import UnhandledErrorMiddleware, install_error_handlers
from shared.logs import RequestContextMiddleware, configure_logging
from shared.metrics import MetricsMiddleware, ServiceMetrics, process_exited
from shared.model import ModelRepository
from shared.oip import health_router
from shared.openapi import install_openapi_hooks
from shared.settings import ServiceSettings
from shared.uploads import InFlightBudget, UploadReader

log = logging.getLogger("irmi.service")

S = TypeVar("S", bound=ServiceSettings)

StartupHook = Callable[["ServiceContext"], Awaitable[None]]


class Served(Protocol):
    """What an inference service serves once started (its model engine, its exam manager)."""

    @property
    def ready(self) -> bool: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceInfo:
    """What a service says of itself in its OpenAPI document and logs."""

    name: str
    title: str
    version: str
    description: str = ""
    openapi_tags: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Serving:
    """How an inference service starts what it serves: ``start`` builds it (None: nothing to
    serve on this instance); it is kept in ``ctx.extras[extra]``, reported ready under
    ``check`` and stopped at shutdown."""

    extra: str
    check: str
    start: Callable[[ServiceContext], Awaitable[Served | None]]


@dataclass
class ServiceContext:
    """Everything a service's routes share; stored on ``app.state.ctx``."""

    name: str
    settings: ServiceSettings
    metrics: ServiceMetrics
    cpu: CpuPool
    uploads: UploadReader
    models: ModelRepository | None = None
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def readiness(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        if self.models is not None:
            out["models"] = self.models.ready
        for name, check in self.checks.items():
            try:
                out[name] = bool(check())
            except Exception:
                out[name] = False
        return out


def create_service_app(
    *,
    name: str,
    title: str,
    version: str,
    settings: ServiceSettings,
    models: ModelRepository | None = None,
    on_startup: list[StartupHook] | None = None,
    on_shutdown: list[StartupHook] | None = None,
    description: str = "",
    openapi_tags: list[dict[str, Any]] | None = None,
    builtin_docs: bool = True,
) -> FastAPI:
    """A FastAPI app with the error envelope, request ids, JSON logs, metrics, health routes
    and (for inference services) a model repository loaded and warmed before start-up ends."""
    metrics = ServiceMetrics(name)
    ctx = ServiceContext(
        name=name,
        settings=settings,
        metrics=metrics,
        cpu=CpuPool(settings.cpu_workers),
        uploads=UploadReader(
            InFlightBudget(settings.max_upload_bytes_in_flight, metrics=metrics), metrics
        ),
        models=models,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if models is not None:
            # Blocking load off the loop; a sha256 mismatch raises here and stops start-up.
            try:
                await ctx.cpu.run(models.load_all)
            except Exception as exc:
                # One short line naming the cause: the traceback after it may be truncated.
                log.error("model loading failed: %s: %s", type(exc).__name__, exc)
                raise
        try:
            for hook in on_startup or []:
                await hook(ctx)
        except Exception as exc:
            # e.g. PreprocessingMismatch: a card the served pipeline disagrees with.
            log.error("start-up refused: %s: %s", type(exc).__name__, exc)
            raise
        log.info("service ready", extra={"service": name})
        try:
            yield
        finally:
            for hook in on_shutdown or []:
                await hook(ctx)
            ctx.cpu.shutdown()
            process_exited()

    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        # FastAPI's own /docs and /redoc load their assets from a CDN; an app that serves
        # packaged ones (the gateway) turns them off.
        docs_url="/docs" if builtin_docs else None,
        redoc_url="/redoc" if builtin_docs else None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    install_openapi_hooks(app)
    app.add_middleware(UnhandledErrorMiddleware)  # innermost: logs inside the request's context
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router(name, ctx.readiness, models))
    app.include_router(metrics.router())
    return app


def create_inference_app(
    info: ServiceInfo, settings: ServiceSettings, models: ModelRepository, serving: Serving
) -> FastAPI:
    """An inference service: :func:`create_service_app` with its model repository, and what it
    serves started once the models are loaded, checked for readiness and stopped at the end."""

    async def start(ctx: ServiceContext) -> None:
        served = await serving.start(ctx)
        if served is not None:
            ctx.extras[serving.extra] = served
            ctx.checks[serving.check] = lambda: served.ready

    async def stop(ctx: ServiceContext) -> None:
        served = ctx.extras.pop(serving.extra, None)
        if served is not None:
            await served.stop()

    return create_service_app(
        name=info.name,
        title=info.title,
        version=info.version,
        settings=settings,
        models=models,
        on_startup=[start],
        on_shutdown=[stop],
        description=info.description,
        openapi_tags=info.openapi_tags,
    )


def run_service(
    name: str,
    settings_factory: Callable[[], S],
    app_factory: Callable[[S], FastAPI],
    argv: list[str] | None = None,
    *,
    worker_app: str | None = None,
) -> None:
    """``python -m <service> [--host H] [--port P]``: flags override the environment.

    A service that keeps no state between requests names ``worker_app``, the import string of
    a factory that builds its app from the environment: with ``settings.processes`` > 1 it
    runs as that many worker processes on the port (:func:`shared.workers.serve_workers`)."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--host", help="bind address (env: <PREFIX>HOST)")
    parser.add_argument("--port", type=int, help="port (env: <PREFIX>PORT)")
    args = parser.parse_args(argv)
    settings = settings_factory()
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    configure_logging(name, settings.log_level, settings.log_json)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        # uvicorn annotates an int but only hands it to loop.call_later: fractions work.
        "timeout_keep_alive": settings.http_keep_alive_s,
        "proxy_headers": False,
        "http": settings.http_parser,
        "loop": settings.event_loop,
    }
    processes = int(getattr(settings, "processes", 1))
    log.info(
        "starting",
        extra={
            "service": name,
            "host": settings.host,
            "port": settings.port,
            "pid": os.getpid(),
            "processes": processes if worker_app else 1,
        },
    )
    if worker_app is not None and processes > 1:
        from shared.workers import serve_workers

        serve_workers(worker_app, processes, getattr(settings, "metrics_dir", None), **options)
        return
    import uvicorn

    uvicorn.run(app_factory(settings), **options)
