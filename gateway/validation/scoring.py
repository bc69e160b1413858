"""One labelled unit of a validation run through the same inference service as clinical
traffic, at low priority.

Low priority means: a replica's runs send at most ``validation_concurrency`` requests at once
(their own semaphore: clinical requests never wait on it, and a run never holds more than that
many of the service's admission slots), and a 503 or 429 from a busy service (its admission
bound is full of clinical work) is waited out for its Retry-After (at most
``validation_retry_max_s``) and tried again, never recorded as a failure. A 4xx refusal of the
image (not a chest X-ray, unreadable) is the unit's outcome, kept in the report.

Chest: tb_service's ``/v1/predict``; the unit's figures are P(abnormal), the 0-100 score, the
reliability and the model. Mammography: the unit's views as one exam on bc_service; the
figure is whatever per-breast score the service returns (the highest breast score of the
exam, which for the views of one breast is that breast's), read from the result as a dict so
that a changed result contract with a per-breast ``score`` still works; the unit keeps how that
breast was read (``reliability.comparison``: with the other breast or alone) and the point it
was read at, since a site point applies only to readings like those it was measured on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from gateway.state import GatewayState
from gateway.upstream import iter_sse
from shared.contracts.chest import ChestPrediction
from shared.errors import IRMIError, ProcessingFailed

log = logging.getLogger("irmi.gateway.validation")

MAX_BUSY_RETRIES = 60  # a service refusing for this long is down, not busy


@dataclass
class Scored:
    probability: float | None = None
    score: float | None = None
    outside_population: bool | None = None
    reliability: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    point: dict[str, Any] | None = None  # the operating point the service read it at
    error_code: str | None = None


class Scorer:
    """The runs' cap and the calls, one per replica."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.slots = asyncio.Semaphore(state.settings.validation_concurrency)

    async def score(self, modality: str, images: list[tuple[bytes, str]]) -> Scored:
        """The unit's figures, or its refusal (``error_code``); retries while the service is
        busy (see module)."""
        settings = self.state.settings
        for _ in range(MAX_BUSY_RETRIES):
            try:
                async with self.slots:
                    if modality == "chest":
                        return await self._chest(*images[0])
                    return await self._mammography(images)
            except IRMIError as exc:
                if exc.status_code not in (429, 503):
                    return Scored(error_code=exc.code)
                wait = _retry_after(exc, settings.upstream_retry_after_s)
                await asyncio.sleep(min(wait, settings.validation_retry_max_s))
        return Scored(error_code="service_unavailable")

    async def _chest(self, data: bytes, media_type: str) -> Scored:
        body = await self.state.upstreams.predict_chest("image", data, media_type)
        try:
            p = ChestPrediction.model_validate_json(body)
        except ValueError as exc:
            raise ProcessingFailed("tb_service returned a malformed prediction.") from exc
        return Scored(
            probability=float(p.probabilities["abnormal"]),
            score=float(p.score),
            outside_population=p.reliability.outside_population,
            reliability=p.reliability.model_dump(mode="json"),
            model=p.operating_point.model.model_dump(mode="json"),
            point=p.operating_point.model_dump(mode="json"),
        )

    async def _mammography(self, images: list[tuple[bytes, str]]) -> Scored:
        parts = [("files", (f"view-{i}", data, mt)) for i, (data, mt) in enumerate(images)]
        resp = await self.state.upstreams.open_exam_stream(parts)
        try:
            async for ev in iter_sse(resp):
                if ev.event == "error":
                    err = (ev.json() or {}).get("error") or ev.json() or {}
                    return Scored(error_code=str(err.get("code", "processing_failed")))
                if ev.event == "result":
                    return _breast_score(ev.json() or {})
        finally:
            await resp.aclose()
        return Scored(error_code="processing_failed")


def _breast_score(exam: dict[str, Any]) -> Scored:
    result = exam.get("result") or {}
    breasts = [b for b in result.get("breasts") or [] if b.get("score") is not None]
    if not breasts:
        return Scored(error_code=str((exam.get("error") or {}).get("code", "processing_failed")))
    worst = max(breasts, key=lambda b: float(b["score"]))
    score = float(worst["score"])
    outside = any(b.get("category") == "outside_population" for b in breasts)
    # the point the breast was read at: with the other breast, or from this breast alone
    comparison = str(worst.get("comparison") or "unilateral")
    card = result.get("operating_point") or {}
    alone = result.get("unilateral_operating_point") if comparison == "unilateral" else None
    point = alone or card
    model = point.get("model") or next(iter(result.get("models") or []), None)
    return Scored(
        probability=score / 100.0,  # model 2's suspicion is calibrated (on mini-MIAS)
        score=score,
        outside_population=outside,
        reliability={"outside_population": outside, "comparison": comparison},
        model=model,
        point=point or None,
    )


def _retry_after(exc: IRMIError, default: int) -> float:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return max(float(value), 0.1) if value is not None else float(default)
    except ValueError:
        return float(default)
