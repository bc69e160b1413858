"""Analysing one complete received DICOM study: route it (:mod:`gateway.dicom_routing`), then
predict a chest film through tb_service or submit the mammography exam to bc_service, as an
IRMI study of the integration account shared with the configured doctors.

The IRMI study, its sharing and the received study's link to it are committed together, so a
replica dying mid-analysis leaves the received study ``analysing`` without a link, and it is
claimed again after ``dicom_lease_s`` (nothing is analysed twice into two studies). A refusal
(routing, or an inference service's 4xx such as ``not_a_chest_xray``) ends the received study
``refused`` or ``failed`` with the error envelope as its reason; an unavailable service leaves
it to be claimed again shortly.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gateway.deidentify import for_inference
from gateway.deps import Principal
from gateway.dicom_routing import InstanceInfo, Route, instance_info, route
from gateway.dicom_tables import DicomInstance, DicomStudy
from gateway.integration import share_received
from gateway.models import User, new_id
from gateway.relay import start_relay
from gateway.state import GatewayState
from gateway.study_writes import Image, create_chest, create_mammography
from shared.clock import now
from shared.contracts.chest import ChestPrediction
from shared.errors import ErrorBody, IRMIError, ProcessingFailed, RetryLater

log = logging.getLogger("irmi.gateway.dicom")
DICOM = "application/dicom"
RETRY_S = 5.0  # an unavailable inference service: try this study again after about this long


async def end(state: GatewayState, dicom_study_id: str, status: str, error: IRMIError) -> None:
    """Close a received study as ``refused``/``failed`` with ``error`` as its reason."""
    reason = ErrorBody(code=error.code, message=error.message, details=error.details)
    async with state.sessions() as session:
        row = await session.get(DicomStudy, dicom_study_id)
        if row is None or row.study_id is not None:
            return
        row.status = status
        row.reason = reason.model_dump()
        row.finished_at = now()
        await session.commit()
    log.info("dicom study %s", status, extra={"dicom_study_id": dicom_study_id, "code": error.code})


async def _postpone(state: GatewayState, dicom_study_id: str) -> None:
    """Let the study be claimed again in about RETRY_S (its lease made to expire then)."""
    lease = timedelta(seconds=state.settings.dicom_lease_s)
    async with state.sessions() as session:
        row = await session.get(DicomStudy, dicom_study_id)
        if row is not None and row.study_id is None:
            row.claimed_at = now() - lease + timedelta(seconds=RETRY_S)
            await session.commit()


async def _load(
    state: GatewayState, dicom_study_id: str
) -> tuple[DicomStudy, User, list[tuple[InstanceInfo, bytes]]] | None:
    async with state.sessions() as session:
        row = await session.get(DicomStudy, dicom_study_id)
        if row is None:
            return None
        account = await session.get(User, row.account_id)
        instances = list(
            await session.scalars(
                select(DicomInstance).where(DicomInstance.dicom_study_id == dicom_study_id)
            )
        )
    if account is None:
        return None
    out = []
    for inst in instances:
        data = await state.store.get(inst.blob_key)
        out.append((await asyncio.to_thread(instance_info, inst.id, data), data))
    return row, account, out


async def analyse(state: GatewayState, dicom_study_id: str) -> None:
    """Route and start the analysis of one claimed received study."""
    loaded = await _load(state, dicom_study_id)
    if loaded is None:
        return
    row, account, instances = loaded
    data_of = {info.ref: data for info, data in instances}
    try:
        plan = route([info for info, _ in instances])
    except IRMIError as exc:
        await end(state, dicom_study_id, "refused", exc)
        return
    images = []
    for position, (tag, info) in enumerate(plan.views):
        data = data_of[info.ref]
        forward = await asyncio.to_thread(for_inference, data, DICOM)
        name = "image" if plan.kind == "chest" else tag or f"view-{position}"
        images.append(Image(name, tag, DICOM, data, forward, position))
    try:
        await _start(state, row, account, plan, images)
    except RetryLater as exc:
        log.warning("dicom study postponed: %s", exc.code, extra={"dicom_study_id": row.id})
        await _postpone(state, dicom_study_id)
    except IRMIError as exc:
        await end(state, dicom_study_id, "failed", exc)


def _link(study_id: str, plan: Route) -> dict[str, Any]:
    notes: dict[str, Any] = {"excluded": plan.excluded} if plan.excluded else {}
    return {"study_id": study_id, "kind": plan.kind, "reason": notes or None}


async def _start(
    state: GatewayState, row: DicomStudy, account: User, plan: Route, images: list[Image]
) -> None:
    principal = Principal(user=account)
    study_id = new_id()
    resp = None
    prediction = None
    if plan.kind == "chest":
        body = await state.upstreams.predict_chest("image", images[0].forward, DICOM)
        try:
            prediction = ChestPrediction.model_validate_json(body)
        except ValueError as exc:
            raise ProcessingFailed("tb_service returned a malformed prediction.") from exc
    else:
        resp = await state.upstreams.open_exam_stream([img.part() for img in images])
    try:
        async with state.sessions() as session:
            mine = await session.get(DicomStudy, row.id)
            if mine is None or mine.study_id is not None:
                return  # deleted, or another replica got there first
            for key, value in _link(study_id, plan).items():
                setattr(mine, key, value)
            await share_received(session, state.settings, account, study_id, plan.kind, mine.source)
            if prediction is not None:
                await create_chest(state, session, principal, images[0], prediction, study_id)
            else:
                await create_mammography(state, session, principal, images, study_id)
    except BaseException:
        if resp is not None:
            await resp.aclose()
        raise
    if resp is not None:
        start_relay(state, study_id, resp)
    log.info("dicom study analysed", extra={"dicom_study_id": row.id, "study_id": study_id})
