"""The DICOM node's app: the health and metrics routes of every IRMI service (ready once the
DICOM listener is up and the gateway accepts the node's key); the listener starts with it."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

from dicom_node import __version__
from dicom_node.forward import Forwarder
from dicom_node.scp import Listener
from dicom_node.settings import Settings
from shared.service import ServiceContext, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    held: dict[str, object] = {}
    gateway = {"ready": False}

    async def startup(ctx: ServiceContext) -> None:
        forwarder = Forwarder(
            settings.gateway_url,
            settings.api_key.get_secret_value() if settings.api_key else "",
            settings.gateway_timeout_s,
        )
        listener = Listener(settings, forwarder, ctx.metrics.registry)
        await asyncio.to_thread(listener.start)

        async def watch() -> None:
            while True:
                gateway["ready"] = await asyncio.to_thread(forwarder.gateway_ready)
                await asyncio.sleep(2)

        held.update(forwarder=forwarder, listener=listener, watch=asyncio.create_task(watch()))
        ctx.checks["dicom_listener"] = lambda: listener.listening
        ctx.checks["gateway"] = lambda: gateway["ready"]

    async def shutdown(_: ServiceContext) -> None:
        task = held.pop("watch", None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listener = held.pop("listener", None)
        if isinstance(listener, Listener):
            await asyncio.to_thread(listener.stop)
        forwarder = held.pop("forwarder", None)
        if isinstance(forwarder, Forwarder):
            forwarder.close()

    return create_service_app(
        name="dicom_node",
        title="IRMI DICOM node",
        version=__version__,
        settings=settings,
        description="C-STORE/C-ECHO SCP in front of the gateway; health and metrics only.",
        on_startup=[startup],
        on_shutdown=[shutdown],
    )
