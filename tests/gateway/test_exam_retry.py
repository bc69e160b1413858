"""Exams lost mid-run, over real HTTP with the stand-in upstream: past the retry window (the
service stays down) the study ends failed; a failed study is run again from its stored images
(owner only, 409 unless failed). The real bc_service killed and restarted mid-exam is in
tests/stress/test_faults.py."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.gateway.conftest import (
    Api,
    patient_api,
    run_fake,
    run_gateway,
    sqlite_gateway_env,
    wait_status,
)
from tests.imagegen import gradient, png_bytes
from tests.procs import Service


def _events(api: Api, url: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    with api.stream("GET", url, timeout=60) as resp:
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append((event, line[5:].strip()))
    return out


def test_outage_longer_than_the_window_fails_the_study(tmp_path: Path) -> None:
    with run_fake("ok", tmp_path) as fake:
        env = sqlite_gateway_env(
            tmp_path,
            fake.url,
            IRMI_GATEWAY_EXAM_RETRY_WINDOW_S="2",
            IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S="0.2",
        )
        with run_gateway(env, tmp_path) as gw:
            p = patient_api(gw.url, "window@example.org")
            view = [("L-CC", ("a.png", png_bytes(gradient(96, 96)) + b"FAKE:slow", "image/png"))]
            r = p.post("/v1/studies/mammography", files=view)
            assert r.status_code == 202, r.text
            url = r.json()["study_url"]
            wait_status(p, url, {"running"})
            fake.proc.kill()  # bc_service gone for good
            fake.proc.wait()
            t0 = time.monotonic()
            study = wait_status(p, url)
            assert time.monotonic() - t0 < 30
    assert study["status"] == "failed", study
    err = study["error"]
    assert err["code"] == "service_unavailable", err
    assert err["details"]["window_s"] == 2 and err["details"]["ready"] is False, err


def test_rerun_a_failed_study_from_its_stored_images(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    fake = fakes["ok"]
    env = sqlite_gateway_env(
        tmp_path,
        fake.url,
        IRMI_GATEWAY_EXAM_ATTEMPTS="1",
        IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S="0.1",
    )
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "rerun@example.org")
        other = patient_api(gw.url, "other@example.org")
        # FAKE:flaky dies the first time these bytes come: with one attempt, the study fails
        image = png_bytes(gradient(100, 80)) + b"FAKE:flaky"
        r = p.post("/v1/studies/mammography", files=[("R-MLO", ("a.png", image, "image/png"))])
        assert r.status_code == 202, r.text
        study_id, url = r.json()["id"], r.json()["study_url"]
        failed = wait_status(p, url)
        assert failed["status"] == "failed", failed
        rerun = f"/v1/studies/{study_id}/rerun"
        assert other.post(rerun).status_code == 404  # not theirs: not even revealed
        r = p.post(rerun)
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["status"] == "queued" and "?after=" in accepted["events_url"]
        again = p.post(rerun)  # already queued or running
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        done = wait_status(p, url)
        assert done["status"] == "succeeded", done
        assert done["error"] is None and done["finished_at"] is not None
        assert done["mammography_result"]["views"][0]["tag"] == "R-MLO"
        assert p.get(done["images"][0]["url"]).content == image  # the stored image was reused
        assert p.post(rerun).status_code == 409  # succeeded: nothing to re-run
        # the new run's events: the re-run marker, progress, the result; not the old error
        assert done["events_url"] == accepted["events_url"]
        events = _events(p, accepted["events_url"])
        kinds = [e for e, _ in events]
        assert kinds[0] == "retry" and '"reason":"rerun"' in events[0][1], events
        assert "progress" in kinds and kinds[-1] == "result" and "error" not in kinds
        # the whole history still has the first run's error
        assert "error" in [e for e, _ in _events(p, url + "/events")]
        # chest studies never end failed; a foreign id is 404
        assert p.post("/v1/studies/" + "0" * 32 + "/rerun").status_code == 404
        # re-runs sent at once: one starts, the others are 409 (one relay, not five)
        dying = png_bytes(gradient(90, 80)) + b"FAKE:die"
        r = p.post("/v1/studies/mammography", files=[("L-CC", ("d.png", dying, "image/png"))])
        assert r.status_code == 202, r.text
        url = r.json()["study_url"]
        assert wait_status(p, url)["status"] == "failed"
        with ThreadPoolExecutor(5) as pool:
            codes = sorted(pool.map(lambda _: p.post(url + "/rerun").status_code, range(5)))
        assert codes == [202, 409, 409, 409, 409], codes
        assert wait_status(p, url)["status"] == "failed"
        kinds = [e for e, _ in _events(p, url + "/events")]
        assert kinds.count("retry") == 1 and kinds.count("error") == 2, kinds
