"""IRMI chest X-ray service: the FastAPI application."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.middleware import Middleware

from shared.bodylimit import BodyLimitMiddleware, by_path
from shared.inference import model_repository
from shared.logs import configure_logging
from shared.service import ServiceContext, ServiceInfo, Serving, create_inference_app
from shared.workers import die_with_parent
from tb_service import __version__
from tb_service.engine import ChestEngine
from tb_service.routes import body_limits, build_router
from tb_service.settings import Settings

log = logging.getLogger("irmi.tb")

DESCRIPTION = """\
Chest X-ray screening: a validity gate (is this a chest X-ray?) followed by an abnormality
screen (normal vs abnormal, pneumonia subtype when abnormal) with a class-activation heatmap.
Screening aid only: every result must be reviewed by a clinician.

Each result's `category` is read at the model card's `operating_point` (score threshold on the
0-100 score, measured sensitivity and specificity with 95% CIs); an image outside the validated
population is always `outside_population` (review recommended). `score_map` is the
low-resolution map of where the model looked, over `crop_box`: render it at display size. The
full-size heatmap PNG (`heatmap=true`) and the 0-1 `threshold` and `label` are deprecated.

Errors use the IRMI envelope `{"error": {"code", "message", "details"}}`.
"""


INFO = ServiceInfo(
    name="tb_service",
    title="IRMI chest X-ray service",
    version=__version__,
    description=DESCRIPTION,
    openapi_tags=[
        {"name": "chest", "description": "Chest X-ray screening."},
        {"name": "legacy", "description": "The original report's API, for old clients."},
        {"name": "operations", "description": "Health, models and metrics."},
    ],
)


def worker_app() -> FastAPI:
    """One worker process of a multi-process tb_service (shared.workers): the app from the
    environment, with the service's logging."""
    die_with_parent()
    settings = Settings()
    configure_logging("tb_service", settings.log_level, settings.log_json)
    return create_app(settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    models = model_repository(settings, settings.models_dir, settings.required_models)

    async def start_engine(ctx: ServiceContext) -> ChestEngine | None:
        names = (settings.gate_model, settings.abnormality_model)
        if not all(n in models for n in names):
            # Only possible when required_models was overridden: serve health/models, and
            # answer predictions with 503 service_unavailable.
            log.warning("chest models not loaded: prediction routes unavailable")
            return None
        engine = ChestEngine(settings, models, ctx)
        await engine.start()
        return engine

    app = create_inference_app(
        INFO, settings, models, Serving("chest", "chest_engine", start_engine)
    )
    app.include_router(build_router(settings))
    # Innermost middleware (after request ids and metrics), so a 413 is logged and counted.
    app.user_middleware.append(
        Middleware(BodyLimitMiddleware, limit_for=by_path(body_limits(settings)))
    )
    return app
