"""The admin API of site operating points: preview and adopt one from a finished run (a new
version, audited), list the versions, roll back. Administrators only (403 for others)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import func, select

from gateway.deps import SessionDep, StateDep, UserPrincipalDep, audit
from gateway.routes.common import CHANGE_ERRORS, LIST_ERRORS
from gateway.validation import site
from gateway.validation.access import AdminDep
from gateway.validation.routes import TAGS, _items, _run
from gateway.validation.schemas import (
    PreviewPublic,
    RollbackRequest,
    SitePointList,
    SitePointPublic,
)
from gateway.validation.site import PointChoice
from gateway.validation.tables import SitePoint
from shared.clock import now
from shared.errors import Conflict

points = APIRouter(prefix="/v1/admin/site-points", tags=TAGS)
from_runs = APIRouter(prefix="/v1/admin/validation-runs", tags=TAGS)


@from_runs.post(
    "/{run_id}/site-point/preview",
    response_model=PreviewPublic,
    operation_id="previewSitePoint",
    summary="What adopting a point from this run would give (nothing is stored)",
    responses=CHANGE_ERRORS,
)
async def preview_point(
    run_id: str, body: PointChoice, _: AdminDep, state: StateDep, session: SessionDep
) -> PreviewPublic:
    run = await _run(session, run_id)
    items = await _items(session, run_id)
    out = await asyncio.to_thread(
        site.preview, run, items, body, state.settings.validation_isotonic_min_positives
    )
    return PreviewPublic.model_validate(out)


@from_runs.post(
    "/{run_id}/site-point",
    status_code=201,
    response_model=SitePointPublic,
    operation_id="adoptSitePoint",
    summary="Adopt a site operating point from this run (a new version; audited)",
    responses=CHANGE_ERRORS,
)
async def adopt_point(
    run_id: str,
    body: PointChoice,
    admin: AdminDep,
    principal: UserPrincipalDep,
    state: StateDep,
    session: SessionDep,
) -> SitePointPublic:
    run = await _run(session, run_id)
    items = await _items(session, run_id)
    out = await asyncio.to_thread(
        site.preview, run, items, body, state.settings.validation_isotonic_min_positives
    )
    model = out["point"]["model"]
    count = await session.scalar(
        select(func.count())
        .select_from(SitePoint)
        .where(SitePoint.modality == run.modality, SitePoint.model_name == model["name"])
    )
    previous = await site.active(session, run.modality)
    t = now()
    if previous is not None:
        previous.status, previous.ended_by, previous.ended_at = "superseded", admin.id, t
    row = SitePoint(
        modality=run.modality,
        model_name=model["name"],
        model_version=model["version"],
        model_sha256=model["sha256"],
        version=int(count or 0) + 1,
        run_id=run.id,
        status="active",
        point=out["point"],
        choice=out["choice"],
        calibration=out["calibration"],
        population=out["population"],
        adopted_by=admin.id,
        adopted_at=t,
    )
    session.add(row)
    await session.flush()
    details = {"site_point": row.id, "version": row.version, "run_id": run.id, "model": model}
    details["score_threshold"] = out["point"]["score_threshold"]
    details["replaced"] = previous.id if previous is not None else None
    audit(session, principal, "site_point_adopt", None, details=details)
    await session.commit()
    state.site_points.changed(run.modality)
    return SitePointPublic.of(row)


@points.get(
    "",
    response_model=SitePointList,
    operation_id="listSitePoints",
    summary="The site points of a modality: the one in force and every version",
    responses=LIST_ERRORS,
)
async def list_points(_: AdminDep, session: SessionDep, modality: str = "chest") -> SitePointList:
    rows = await session.execute(
        select(SitePoint)
        .where(SitePoint.modality == modality)
        .order_by(SitePoint.adopted_at.desc(), SitePoint.version.desc())
    )
    items = [SitePointPublic.of(r) for r in rows.scalars()]
    now_active = next((i for i in items if i.status == "active"), None)
    return SitePointList(active=now_active, items=items)


@points.post(
    "/rollback",
    response_model=SitePointList,
    operation_id="rollbackSitePoint",
    summary="Roll back the point in force: the one it replaced (or the card's) applies again",
    responses=CHANGE_ERRORS,
)
async def rollback_point(
    body: RollbackRequest,
    admin: AdminDep,
    principal: UserPrincipalDep,
    state: StateDep,
    session: SessionDep,
) -> SitePointList:
    current = await site.active(session, body.modality)
    if current is None:
        raise Conflict("No site point is in force: results are read at the card's point.")
    t = now()
    current.status, current.ended_by, current.ended_at = "rolled_back", admin.id, t
    before = (
        await session.execute(
            select(SitePoint)
            .where(
                SitePoint.modality == body.modality,
                SitePoint.status == "superseded",
                SitePoint.id != current.id,
            )
            .order_by(SitePoint.adopted_at.desc(), SitePoint.version.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if before is not None:
        before.status, before.ended_by, before.ended_at = "active", None, None
    details = {
        "site_point": current.id,
        "version": current.version,
        "restored": before.id if before is not None else None,
    }
    audit(session, principal, "site_point_rollback", None, details=details)
    await session.commit()
    state.site_points.changed(body.modality)
    return await list_points(admin, session, body.modality)
