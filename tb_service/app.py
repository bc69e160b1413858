"""IRMI chest X-ray service: the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from shared.model import ModelRepository
from shared.service import create_service_app
from tb_service import __version__
from tb_service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    models = ModelRepository(
        settings.models_dir,
        required=settings.required_models,
        use_gpu=settings.use_gpu,
        intra_op_threads=settings.onnx_intra_op_threads,
        inter_op_threads=settings.onnx_inter_op_threads,
    )
    app = create_service_app(
        name="tb_service",
        title="IRMI chest X-ray service",
        version=__version__,
        settings=settings,
        models=models,
    )
    return app
