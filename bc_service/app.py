"""IRMI mammography service: the FastAPI application."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware import Middleware

from bc_service import __version__
from bc_service.exams import ExamManager, PipelineLike
from bc_service.routes import EXCHANGE_DOC, exam_urls, router
from bc_service.settings import Settings
from bc_service.uploads import body_limits
from shared.bodylimit import BodyLimitMiddleware, by_path
from shared.inference import model_repository
from shared.model import ModelRepository
from shared.service import ServiceContext, ServiceInfo, Serving, create_inference_app

PipelineFactory = Callable[[ModelRepository, Settings], PipelineLike]


def default_pipeline(models: ModelRepository, settings: Settings) -> PipelineLike:
    """The mammography model on the loaded repository, warmed up (blocking)."""
    from bc_service.pipeline import MammoPipeline

    pipeline = MammoPipeline(
        models,
        patch_batch_size=settings.patch_batch_size,
        heatmaps=settings.heatmaps,
        gate=settings.mammogram_gate,
        strict_preprocessing=settings.strict_preprocessing,
    )
    pipeline.warmup()
    return pipeline


def _required_models(settings: Settings) -> list[str]:
    if settings.required_models is not None:
        return list(settings.required_models)
    try:
        from bc_service.pipeline import MammoPipeline
    except ImportError:  # pragma: no cover - pipeline package missing
        return []
    return list(MammoPipeline.required_models)


INFO = ServiceInfo(
    name="bc_service",
    title="IRMI mammography service",
    version=__version__,
    description=(
        "Mammogram screening aid: crop, orientation, enhancement, optimal centers, "
        "patch-classifier heatmaps and per-view / per-breast / per-exam classification, "
        "with live progress over server-sent events.\n" + EXCHANGE_DOC
    ),
    openapi_tags=[
        {"name": "mammography", "description": "Exams, their events, one-view prediction."},
        {"name": "operations", "description": "Health, models and metrics."},
    ],
)


def create_app(
    settings: Settings | None = None, pipeline_factory: PipelineFactory | None = None
) -> FastAPI:
    settings = settings or Settings()
    factory = pipeline_factory or default_pipeline
    models = model_repository(settings, settings.models_dir, _required_models(settings))

    async def start_exams(ctx: ServiceContext) -> ExamManager:
        pipeline = await ctx.cpu.run(factory, models, settings)
        manager = ExamManager(
            pipeline,
            urls=lambda exam_id: exam_urls(exam_id, settings),
            metrics=ctx.metrics,
            workers=settings.workers,
            max_queued=settings.max_queued_exams,
            ttl_seconds=settings.exam_ttl_seconds,
            max_exams=settings.max_exams,
            stage_delay_s=settings.debug_stage_delay_ms / 1000.0,
        )
        manager.start()
        return manager

    app = create_inference_app(INFO, settings, models, Serving("exams", "pipeline", start_exams))
    app.include_router(router)
    # Innermost middleware (after request ids and metrics), so a 413 is logged and counted.
    app.user_middleware.append(
        Middleware(BodyLimitMiddleware, limit_for=by_path(body_limits(settings)))
    )
    return app
