"""Health and model routes in the style of the Open Inference Protocol (``/v2/...``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from shared.errors import ErrorEnvelope, NotFound, error_response
from shared.model import ModelRepository


class LiveStatus(BaseModel):
    live: bool


class ReadyStatus(BaseModel):
    ready: bool
    service: str
    checks: dict[str, bool] = {}


class ModelSummary(BaseModel):
    name: str
    version: str
    ready: bool
    provider: str | None = None


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(BaseModel):
    """The model card plus runtime state (provider, ready, load time)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    sha256: str
    ready: bool
    provider: str | None = None


def health_router(
    service: str,
    readiness: Callable[[], dict[str, bool]],
    models: ModelRepository | None = None,
) -> APIRouter:
    """``/v2/health/live``, ``/v2/health/ready`` and, when a model repository is given,
    ``/v2/models``, ``/v2/models/{name}``, ``/v2/models/{name}/versions/{v}`` and
    ``/v2/models/{name}/ready``."""
    router = APIRouter(tags=["operations"])
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"model": ReadyStatus, "description": "Not ready yet."}
    }

    @router.get(
        "/v2/health/live", operation_id="getLiveness", response_model=LiveStatus, summary="Liveness"
    )
    async def live() -> LiveStatus:
        return LiveStatus(live=True)

    @router.get(
        "/v2/health/ready",
        operation_id="getReadiness",
        response_model=ReadyStatus,
        responses=not_ready,
        summary="Readiness",
    )
    async def ready() -> Any:
        checks = readiness()
        body = ReadyStatus(ready=all(checks.values()), service=service, checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    if models is None:
        return router

    missing: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorEnvelope, "description": "Unknown model or version."}
    }

    @router.get(
        "/v2/models", operation_id="listModels", response_model=ModelList, summary="Loaded models"
    )
    async def list_models() -> ModelList:
        return ModelList(
            models=[
                ModelSummary(name=m.name, version=m.version, ready=m.ready, provider=m.provider)
                for m in models.models.values()
            ]
        )

    def _find(name: str, version: str | None = None) -> Any:
        model = models.models.get(name)
        if model is None or (version is not None and model.version != version):
            raise NotFound(f"No model {name!r}" + (f" version {version!r}" if version else ""))
        return model

    @router.get(
        "/v2/models/{name}",
        operation_id="getModelCard",
        response_model=ModelDetail,
        responses=missing,
        summary="Model card",
    )
    async def model_card(name: str) -> Any:
        return _find(name).describe()

    @router.get(
        "/v2/models/{name}/versions/{version}",
        operation_id="getModelVersionCard",
        response_model=ModelDetail,
        responses=missing,
        summary="Model card of one version",
    )
    async def model_version(name: str, version: str) -> Any:
        return _find(name, version).describe()

    @router.get(
        "/v2/models/{name}/ready",
        operation_id="getModelReadiness",
        response_model=ReadyStatus,
        responses={**missing, **not_ready},
        summary="Model readiness",
    )
    async def model_ready(name: str) -> Any:
        model = _find(name)
        body = ReadyStatus(ready=model.ready, service=service, checks={name: model.ready})
        if not model.ready:
            return error_response(503, "service_unavailable", f"Model {name} is not ready.")
        return body

    return router
