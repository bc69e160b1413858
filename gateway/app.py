"""IRMI gateway: the FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway import __version__, security
from gateway.db import create_engine, migrate, ping, session_factory
from gateway.dicom_worker import worker as dicom_worker
from gateway.docs_routes import include_docs
from gateway.keycache import ApiKeyCache, RevocationListener
from gateway.middleware import SecurityHeadersMiddleware
from gateway.relay import stop_relays, sweeper
from gateway.routes import (
    admin,
    auth,
    care,
    dicom_admin,
    dicomweb,
    models,
    predict,
    reset,
    studies,
    study_exports,
    study_images,
)
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import create_store
from gateway.streams import StreamHub
from gateway.upstream import Upstreams
from gateway.validation import point_routes
from gateway.validation import routes as validation
from gateway.validation import runner as validation_runner
from gateway.validation.point_cache import SitePointCache
from shared.bodylimit import BodyLimitMiddleware, by_route
from shared.errors import amend_openapi, envelope_entry, openapi_operations
from shared.service import ServiceContext, create_service_app

log = logging.getLogger("irmi.gateway")

TAGS: list[dict[str, Any]] = [
    {"name": "auth", "description": "Sign-up, login, refresh-token rotation, logout."},
    {"name": "users", "description": "The logged-in user."},
    {"name": "api-keys", "description": "Keys for integrators, sent as `X-API-Key`."},
    {"name": "studies", "description": "Uploads, history, results, images, events."},
    {"name": "predict", "description": "Stateless predictions for integrators."},
    {"name": "doctors", "description": "Doctors by specialty, best rated first."},
    {"name": "consultations", "description": "A patient asks a doctor about a study."},
    {"name": "admin", "description": "Administrators: doctors' verification."},
    {
        "name": "validation",
        "description": "Administrators: validation runs on the site's own labelled films, "
        "their reports, and the site operating points adopted from them.",
    },
    {"name": "dicomweb", "description": "DICOMweb STOW-RS for the PACS integration account."},
    {"name": "operations", "description": "Health and readiness."},
]

DESCRIPTION = """Intelligent Remote Medical Imaging: **a screening aid, not a diagnosis.**

Authenticate with `Authorization: Bearer <access token>` (from `POST /v1/auth/login`,
renewed with `POST /v1/auth/refresh`) or, for integrators, `X-API-Key: <key>`.
Every error is `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # httpx logs every upstream call at INFO with its URL; our access log already covers it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    holder: dict[str, GatewayState] = {}
    monitor: dict[str, asyncio.Task[None]] = {}
    listeners: dict[str, RevocationListener] = {}

    async def startup(ctx: ServiceContext) -> None:
        asyncio.get_running_loop().run_in_executor(None, security.dummy_hash)  # not awaited
        engine = create_engine(settings.database_url, settings.database_echo)
        if settings.migrate_on_startup:
            await migrate(engine)
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        sessions = session_factory(engine)
        state = GatewayState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            store=create_store(settings),
            upstreams=Upstreams(settings),
            streams=StreamHub(settings, sessions),
            jwt_secret=secret,
            keys=ApiKeyCache(settings.api_key_cache_s),
            site_points=SitePointCache(settings.site_point_cache_s),
        )
        revocations = RevocationListener(settings.database_url, state.keys)
        revocations.start()
        listeners["revocations"] = revocations
        state.db_ok = await ping(engine)
        state.store_ok = await state.store.ping()
        holder["state"] = state
        app.state.gw = state
        ctx.checks["database"] = lambda: state.db_ok
        ctx.checks["image_store"] = lambda: state.store_ok

        async def watch() -> None:
            while True:
                await asyncio.sleep(2)
                state.db_ok = await ping(engine)
                state.store_ok = await state.store.ping()

        monitor["task"] = asyncio.create_task(watch())
        monitor["sweeper"] = asyncio.create_task(sweeper(state))
        monitor["validation"] = asyncio.create_task(validation_runner.run_forever(state))
        monitor["dicom"] = asyncio.create_task(dicom_worker(state))

    async def shutdown(_: ServiceContext) -> None:
        await validation_runner.stop(monitor.pop("validation", None))
        listener = listeners.pop("revocations", None)
        if listener is not None:
            await listener.stop()
        tasks = [monitor.pop(n, None) for n in ("task", "sweeper", "dicom")]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        state = holder.pop("state", None)
        if state is None:
            return
        await state.streams.aclose()
        await stop_relays(state)
        await state.upstreams.close()
        await state.store.close()
        await state.engine.dispose()

    app = create_service_app(
        name="gateway",
        title="IRMI API",
        version=__version__,
        settings=settings,
        description=DESCRIPTION,
        on_startup=[startup],
        on_shutdown=[shutdown],
        openapi_tags=TAGS,
        builtin_docs=False,  # gateway.docs_routes serves them from packaged assets
    )
    routers = [
        auth.router,
        reset.router,
        auth.keys_router,
        studies.router,
        study_images.router,
        study_exports.router,
        models.router,
        predict.router,
        care.doctors,
        care.consultations,
        admin.router,
        validation.runs,
        point_routes.from_runs,
        point_routes.points,
        dicom_admin.router,
        dicomweb.router,
    ]
    for router in routers:
        app.include_router(router)
    _mount_web_ui(app)
    include_docs(app)
    # Upload routes may take max_request_bytes; every other body (JSON) max_json_bytes.
    limits = by_route(
        [route for router in routers for route in router.routes],
        uploads=settings.max_request_bytes,
        other=settings.max_json_bytes,
    )
    app.add_middleware(BodyLimitMiddleware, limit_for=dicomweb.with_stow_limit(limits, settings))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-API-Key",
            "X-Request-ID",
            "Last-Event-ID",
        ],
        expose_headers=["X-Request-ID", "Retry-After", "Location"],
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.hsts)
    _envelope_validation_errors(app)
    return app


def _mount_web_ui(app: FastAPI) -> None:
    """The web UI lives in ``gateway/web`` (a package exposing ``mount(app)``) and is served
    at ``/``; the API is complete without it."""
    if importlib.util.find_spec("gateway.web") is None:
        return
    web = importlib.import_module("gateway.web")
    mount = getattr(web, "mount", None)
    if callable(mount):
        mount(app)


def _envelope_validation_errors(app: FastAPI) -> None:
    """FastAPI documents request-validation failures as ``HTTPValidationError``; the gateway
    answers them with the error envelope (code ``validation_error``), so document that."""

    def amend(doc: dict[str, Any]) -> None:
        envelope = envelope_entry("Error envelope; code validation_error")
        for op in openapi_operations(doc):
            resp = op.get("responses", {}).get("422")
            if resp and "HTTPValidationError" in json.dumps(resp):
                op["responses"]["422"] = envelope
        schemas = doc.get("components", {}).get("schemas", {})
        if "HTTPValidationError" not in json.dumps(doc.get("paths", {})):
            schemas.pop("HTTPValidationError", None)
            if "ValidationError" not in json.dumps(doc.get("paths", {})).replace(
                "HTTPValidationError", ""
            ):
                schemas.pop("ValidationError", None)

    amend_openapi(app, amend)
