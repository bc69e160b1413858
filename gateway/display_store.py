"""Display images and thumbnails of a study's originals (:mod:`gateway.display`), rendered once
and kept in the image store beside the original (content-addressed and encrypted at rest like
every blob, :mod:`gateway.store`), recorded as the study's files: role ``display`` (named
``<original id>.<preset>``) and ``thumbnail`` (named by the original's id). Deleting the study
deletes them with its other files.

Rendering decodes the whole original (a mammography DICOM can be tens of MB), so it runs off
the event loop, at most :data:`RENDER_SLOTS` at a time per process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import display
from gateway.display import Preset, Rendered
from gateway.models import StudyFile
from gateway.state import GatewayState
from gateway.studies import remove_unreferenced
from shared.errors import NotFound

log = logging.getLogger("irmi.gateway.display")

ROLE_DISPLAY = "display"
ROLE_THUMBNAIL = "thumbnail"
RENDER_SLOTS = 2
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _slot() -> asyncio.Semaphore:
    """This event loop's render slots (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(RENDER_SLOTS)
    return _slots[loop]


async def original_file(session: AsyncSession, study_id: str, image_id: str) -> StudyFile:
    """The study's original image ``image_id``; 404 when it has none of that id."""
    row = (
        await session.execute(
            select(StudyFile).where(
                StudyFile.study_id == study_id,
                StudyFile.role == "original",
                StudyFile.id == image_id,
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such image in this study.")
    return row


async def _cached(
    state: GatewayState,
    session: AsyncSession,
    original: StudyFile,
    role: str,
    name: str,
    render: Callable[[], Awaitable[Rendered]],
) -> bytes:
    row = (
        await session.execute(
            select(StudyFile).where(
                StudyFile.study_id == original.study_id,
                StudyFile.role == role,
                StudyFile.name == name,
            )
        )
    ).scalar_one_or_none()
    if row is not None:
        try:
            return await state.store.get(row.blob_key)
        except NotFound:  # the blob went missing: render it again below
            await session.delete(row)
            await session.commit()
    rendered = await render()
    key = await state.store.put(rendered.data)
    session.add(
        StudyFile(
            study_id=original.study_id,
            role=role,
            name=name,
            blob_key=key,
            media_type=rendered.media_type,
            size=len(rendered.data),
            position=original.position,
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        # Another request stored it first (the same bytes: rendering is deterministic), or
        # the study was deleted meanwhile: keep the blob only if a row still uses it.
        await session.rollback()
        await remove_unreferenced(state, session, {key})
    return rendered.data


async def _in_slot(fn: Callable[[], Rendered]) -> Rendered:
    async with _slot():
        return await asyncio.to_thread(fn)


async def display_png(
    state: GatewayState, session: AsyncSession, original: StudyFile, preset: Preset
) -> bytes:
    """The display PNG of ``original`` at ``preset`` (rendered on first use, then stored)."""

    async def render() -> Rendered:
        data = await state.store.get(original.blob_key)
        limits = state.settings.limits()
        return await _in_slot(lambda: display.render_display(data, preset, limits))

    return await _cached(state, session, original, ROLE_DISPLAY, f"{original.id}.{preset}", render)


async def thumbnail_jpeg(state: GatewayState, session: AsyncSession, original: StudyFile) -> bytes:
    """The history thumbnail of ``original`` (from its ``file`` display image)."""

    async def render() -> Rendered:
        png = await display_png(state, session, original, "file")
        return await _in_slot(lambda: display.render_thumbnail(png))

    return await _cached(state, session, original, ROLE_THUMBNAIL, original.id, render)
