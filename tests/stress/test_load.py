"""A small version of the load run of ``make load`` (200 at once):
40 concurrent uploads to the running system; nothing lost, nothing duplicated, every answer
2xx or 503 with Retry-After, memory bounded."""

from __future__ import annotations

import httpx

from tests.stress.load import run_load
from tests.stress.system import System

MIB = 1024


def test_40_concurrent_uploads(irmi_system: System) -> None:
    report = run_load(irmi_system, 40, mammo_every=10)
    print("\nload:", report.as_dict())
    assert not report.bad, report.bad
    assert not report.problems, report.problems
    assert report.accepted + report.refused_503 == 40
    assert report.accepted >= 1
    for name, mem in report.rss_kib.items():
        # bounded: the run adds at most a few hundred MiB to any process
        assert mem["rss_after"] - mem["rss_before"] < 400 * MIB, (name, mem)
    for svc in (irmi_system.gw, irmi_system.tb, irmi_system.bc):
        assert httpx.get(svc.url + "/v2/health/ready", timeout=10).status_code == 200
