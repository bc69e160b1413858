"""One real bc_service process (``python -m bc_service``) shared by the HTTP tests."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.bc_service.images import HAVE_MIAS
from tests.procs import Service, spawn, wait_ready

# Small pool and queue so that overload is reachable with three exams; a short stage delay
# keeps an exam running long enough to cancel or leave it; fast heartbeats.
SERVICE_ENV = {
    "IRMI_BC_WORKERS": "1",
    "IRMI_BC_MAX_QUEUED_EXAMS": "1",
    "IRMI_BC_HEARTBEAT_SECONDS": "0.2",
    "IRMI_BC_DEBUG_STAGE_DELAY_MS": "250",
    "IRMI_BC_CPU_WORKERS": "1",
    "IRMI_BC_USE_GPU": "false",
}
if not HAVE_MIAS:
    # Synthetic phantoms are no mammograms to the trained gate: switch it off for them.
    SERVICE_ENV["IRMI_BC_MAMMOGRAM_GATE"] = "false"


@pytest.fixture(scope="session")
def bc() -> Iterator[Service]:
    svc = spawn("bc_service", SERVICE_ENV)
    try:
        wait_ready(svc, timeout=180)
        yield svc
    finally:
        svc.stop()


def wait_idle(client: httpx.Client, limit_s: float = 120.0) -> None:
    """Until no exam runs or waits (a cancelled exam's thread stops at a stage boundary)."""
    deadline = time.monotonic() + limit_s
    pattern = re.compile(r'irmi_queue_depth\{queue="exams_(running|waiting)".*\} (\S+)')
    while True:
        values = [float(v) for _, v in pattern.findall(client.get("/metrics").text)]
        if all(v == 0 for v in values):
            return
        assert time.monotonic() < deadline, "bc_service never went idle"
        time.sleep(0.1)


@pytest.fixture
def client(bc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bc.url, timeout=120) as c:
        wait_idle(c)
        yield c
