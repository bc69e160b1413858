"""Many studies through Orthanc -> IRMI -> Orthanc with IRMI (gateway and DICOM node) killed
(SIGKILL) and restarted in the middle: every study comes back with exactly one SR and its
overlays, none is lost, none is analysed twice.

Orthanc plays a PACS that retries what it could not send (a failed store job is resubmitted,
as a PACS's routing rules do): C-STORE success from IRMI means the instance is stored, so
everything acknowledged before the kill survives it, and everything not acknowledged is sent
again. `make test` runs 12 studies; `make dicom-soak` (IRMI_TEST_LONG_FAULTS=1) runs 50.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from pydicom.uid import generate_uid

from tests.dicom import films
from tests.dicom.conftest import require_chain
from tests.dicom.system import DicomSystem

LONG = os.environ.get("IRMI_TEST_LONG_FAULTS", "").lower() in {"1", "true", "yes"}
COUNT = int(os.environ.get("IRMI_TEST_DICOM_STUDIES", "50" if LONG else "12"))
MAMMO_EVERY = 4  # every 4th study is a two-view mammogram, the others chest films
LIMIT_S = 600 if COUNT <= 12 else 1500

pytestmark = [pytest.mark.realdata, pytest.mark.timeout(LIMIT_S + 300)]


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomSystem]:
    require_chain()
    # A quiet period that outlasts a restart's gap between a failed job and its resubmission
    # is not needed: after a start the worker waits one quiet period before it closes studies.
    system = DicomSystem(tmp_path_factory.mktemp("dicom-soak"), quiet_s=4.0)
    try:
        yield system
    finally:
        system.stop()


def _studies() -> list[tuple[str, list[bytes], int]]:
    """(StudyInstanceUID, files, overlays expected) per study, from distinct real films."""
    chest, women = films.chest_films(), films.mammo_women()
    out = []
    for i in range(COUNT):
        uid = generate_uid()
        if i % MAMMO_EVERY == MAMMO_EVERY - 1:
            woman = women[(i // MAMMO_EVERY) % len(women)]
            files = [
                films.mammo_dicom(p, t, uid, f"S{i}", instance_number=n)
                for n, (p, t) in enumerate(woman)
            ]
            out.append((uid, files, 2))
        else:
            out.append((uid, [films.chest_dicom(chest[i % len(chest)], uid, f"S{i}")], 1))
    return out


def test_no_study_lost_across_an_irmi_restart(soak: DicomSystem) -> None:
    studies = _studies()
    started = time.monotonic()
    with soak.pacs.client() as pacs:
        ids = [soak.upload_study(pacs, files) for _, files, _ in studies]
        jobs: dict[str, str] = {}
        half = COUNT // 2
        for orthanc_id in ids[:half]:
            jobs[orthanc_id] = soak.forward_job(pacs, orthanc_id)
        time.sleep(1.0)  # some of these are mid-association now
        soak.kill_irmi()
        for orthanc_id in ids[half:]:
            jobs[orthanc_id] = soak.forward_job(pacs, orthanc_id)  # fail: IRMI is down
        time.sleep(1.0)
        soak.start_irmi()
        resubmitted = 0
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            states = {s: soak.job_state(pacs, j) for s, j in jobs.items()}
            failed = [s for s, state in states.items() if state == "Failure"]
            for orthanc_id in failed:
                r = pacs.post(f"/jobs/{jobs[orthanc_id]}/resubmit", json={})
                assert r.status_code == 200, r.text
                resubmitted += 1
            if all(state == "Success" for state in states.values()):
                break
            time.sleep(1.0)
        assert all(soak.job_state(pacs, j) == "Success" for j in jobs.values())
        assert resubmitted >= COUNT - half  # the jobs sent while IRMI was down, at least

        # Every study comes back: one SR and its overlays, in its own study.
        lost = []
        for orthanc_id, (uid, _, overlays) in zip(ids, studies, strict=True):
            remaining = max(5.0, deadline - time.monotonic())
            try:
                got = soak.wait_results(pacs, orthanc_id, sc=overlays, limit_s=remaining)
            except AssertionError:
                lost.append(uid)
                continue
            assert len(got["SR"]) == 1, (uid, got)
            assert len(got["SC"]) == overlays, (uid, got)
    elapsed = time.monotonic() - started
    assert lost == []
    rows = [r for r in soak.received() if r["study_uid"] in {u for u, _, _ in studies}]
    assert sorted(r["study_uid"] for r in rows) == sorted(u for u, _, _ in studies)  # one each
    assert {r["status"] for r in rows} == {"done"}
    sent = soak.settled_exports({u for u, _, _ in studies})
    assert {e["status"] for e in sent} == {"sent"}
    assert len(sent) == sum(1 + n for _, _, n in studies)
    print(
        f"\n{COUNT} studies in, {COUNT - len(lost)} results back, {len(lost)} lost; "
        f"{resubmitted} store jobs resubmitted after the restart; {elapsed:.0f} s in all"
    )
