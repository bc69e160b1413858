"""IRMI gateway: the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from gateway import __version__
from gateway.settings import Settings
from gateway.web_routes import include_web
from shared.service import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        name="gateway",
        title="IRMI API",
        version=__version__,
        settings=settings,
        description="Intelligent Remote Medical Imaging: a screening aid, not a diagnosis.",
    )
    include_web(app)
    return app
