"""Scale-out for real on loopback: two replicas of every service behind Debian's nginx (round
robin, no affinity), one PostgreSQL, one SeaweedFS S3 bucket. Bounded in time (pytest-timeout)
and loopback only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy import scaleout
from tests.procs import REPO

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(autouse=True)
def _harness() -> None:
    scaleout.require_harness()


def _inference_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The real services as the gateway tests run them: tb_service on tiny rigged ONNX models
    with the real models' I/O unless real ones are committed; bc_service's pipeline as shipped
    (heuristic fallbacks until its models are committed). One thread each: 2 cores here."""
    from tests.onnxgen import chest_model_folders

    tb_env = {"IRMI_TB_USE_GPU": "false", "IRMI_TB_ONNX_INTRA_OP_THREADS": "1"}
    if not (REPO / "tb_service" / "models" / "chest-abnormality").is_dir():
        tb_env["IRMI_TB_MODELS_DIR"] = str(chest_model_folders(tmp_path / "tb-models"))
    bc_env = {
        "IRMI_BC_USE_GPU": "false",
        "IRMI_BC_WORKERS": "1",
        "IRMI_BC_CPU_WORKERS": "1",
        "IRMI_BC_ONNX_INTRA_OP_THREADS": "1",
        # every stage boundary waits a little, so that an exam is surely in flight when
        # replicas are stopped under it
        "IRMI_BC_DEBUG_STAGE_DELAY_MS": "150",
    }
    if not any((REPO / "bc_service" / "models").glob("*/*/model.onnx")):
        bc_env["IRMI_BC_REQUIRED_MODELS"] = "[]"
    return tb_env, bc_env


def _events(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """Read an SSE stream to its end: [{'id', 'event', 'data'}...]."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", url, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line == "":
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    events.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
    return events


def _last_upstream(lb: scaleout.Nginx, request: str) -> int:
    """Port of the replica that answered the last request starting with ``request``."""
    lines = [x for x in (lb.prefix / "access.log").read_text().splitlines() if request in x]
    return int(lines[-1].split("upstream=")[1].split()[0].rsplit(":", 1)[1])


def _holder(ports: list[int], timeout: float = 30.0) -> int:
    """Index of the bc_service replica that holds an active exam (its queue-depth gauges)."""
    deadline = time.monotonic() + timeout
    while True:
        held = []
        for i, port in enumerate(ports):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            active = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if not line.startswith("#")
                and ('"exams_running"' in line or '"exams_waiting"' in line)
            )
            if active > 0:
                held.append(i)
        if len(held) == 1:
            return held[0]
        assert time.monotonic() < deadline, f"expected one replica with the exam, found {held}"
        time.sleep(0.1)


def _mammography(client: httpx.Client) -> dict[str, Any]:
    """Submit a 2-view exam, follow its live progress to the result, return the stored study."""
    from tests.bc_service.images import mammogram

    r = client.post(
        "/v1/studies/mammography",
        files=[
            ("L-MLO", ("l.png", mammogram(), "image/png")),
            ("R-MLO", ("r.png", mammogram(right=True), "image/png")),
        ],
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    events = _events(client, accepted["events_url"])
    kinds = [e["event"] for e in events]
    assert "progress" in kinds and kinds[-1] == "result", kinds
    study = client.get(accepted["study_url"]).json()
    assert study["status"] == "succeeded", study
    return dict(study)


def test_patient_flow_over_two_replicas_of_everything(tmp_path: Path) -> None:
    """The patient flow through the gateway balancer, every request free to land on either
    replica: sign-up, login, chest and mammography studies (live progress, stored result,
    images and heatmaps from S3), history, a doctor's consultation. Then one replica of each
    service is stopped mid-run, the exam in flight with them: it completes on the survivors,
    every study, image and session is still there, and new studies go through the
    survivors."""
    from tests.gateway.conftest import Api, signup_login, verify_doctor
    from tests.tb_service.svc_helpers import chest_png

    tb_env, bc_env = _inference_env(tmp_path)
    extra = {
        "IRMI_GATEWAY_LOGIN_CLIENT_FREE_FAILURES": "1000",
        "IRMI_GATEWAY_EVENTS_POLL_S": "0.1",
        "IRMI_GATEWAY_CPU_WORKERS": "1",
        # a stopped replica's exam is adopted by the other within seconds
        "IRMI_GATEWAY_RELAY_LEASE_S": "3",
        "IRMI_GATEWAY_RELAY_SWEEP_S": "0.5",
        "IRMI_GATEWAY_EXAM_RETRY_BACKOFF_S": "0.2",
    }
    with scaleout.stack(
        tmp_path / "logs", tb_env=tb_env, bc_env=bc_env, gateway_extra_env=extra
    ) as st:
        anon = Api(st.url)
        patient = signup_login(anon, "pat@example.org")
        doctor = signup_login(
            anon, "doc@example.org", "doctor", specialty="radiology", licence_number="LIC-1"
        )
        verify_doctor(anon, st.pg.url, doctor["user"]["id"])  # admin made by the CLI
        p = anon.as_token(patient["access_token"])
        d = anon.as_token(doctor["access_token"])

        # chest studies: synchronous results, images stored in S3
        chest_ids = []
        for seed in range(2):
            xray = chest_png(300, 260, seed=seed)
            r = p.post("/v1/studies/chest", files={"file": ("x.png", xray, "image/png")})
            assert r.status_code == 201, r.text
            chest = r.json()
            assert chest["status"] == "succeeded"
            chest_ids.append(chest["id"])
            for _ in range(2):  # each replica reads the same bytes back from S3
                assert p.get(chest["images"][0]["url"]).content == xray
        mammo = _mammography(p)
        for ref in mammo["mammography_result"]["views"][0]["heatmaps"].values():
            assert p.get(ref["url"]).content.startswith(b"\x89PNG")

        # a consultation: the doctor sees the shared study, replies, the patient reads it
        r = p.post(
            "/v1/consultations",
            json={"study_id": chest_ids[0], "doctor_id": doctor["user"]["id"], "question": "?"},
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert d.get(f"/v1/studies/{chest_ids[0]}").status_code == 200

        # both gateway replicas took part, and both replicas of each inference service; the
        # exam's live events came from a gateway replica other than the one it was sent to
        gw_used = {u.rsplit(":", 1)[1] for u in st.lb.upstreams_used("gateway")}
        assert gw_used == {str(port) for port in st.gateway.ports}
        lines = (st.lb.prefix / "access.log").read_text().splitlines()
        at = next(i for i, x in enumerate(lines) if "POST /v1/studies/mammography" in x)
        events = next(x for x in lines[at:] if "/events " in x)
        assert lines[at].split("upstream=")[1].split()[0] != events.split("upstream=")[1].split()[0]
        assert len(set(st.inner.upstreams_used("tb"))) == 2

        # mid-run, with an exam in flight: the gateway replica relaying it and the bc_service
        # replica computing it are the ones stopped (with one tb_service replica)
        from tests.bc_service.images import mammogram

        r = p.post(
            "/v1/studies/mammography",
            files=[("L-MLO", ("l.png", mammogram(seed=3), "image/png"))],
        )
        assert r.status_code == 202, r.text
        in_flight = r.json()
        st.gateway.stop(st.gateway.ports.index(_last_upstream(st.lb, "POST /v1/studies/mammo")))
        st.bc.stop(_holder(st.bc.ports))
        st.tb.stop(0)
        deadline = time.monotonic() + 120
        while (study := p.get(in_flight["study_url"]).json())["status"] in {"queued", "running"}:
            assert time.monotonic() < deadline, f"exam stuck after losing replicas: {study}"
            time.sleep(0.5)
        # the surviving gateway replica adopted the exam and re-ran it on the surviving
        # bc_service replica from the stored images: nothing lost
        assert study["status"] == "succeeded", study
        assert study["mammography_result"]["views"][0]["tag"] == "L-MLO"
        kinds = [e["event"] for e in _events(p.client, in_flight["events_url"])]
        assert "retry" in kinds and kinds[-1] == "result", kinds

        # nothing lost: sessions, studies, images, the consultation
        hist = p.get("/v1/studies").json()
        assert {s["id"] for s in hist["items"]} == {*chest_ids, mammo["id"], in_flight["id"]}
        again = p.get(f"/v1/studies/{mammo['id']}").json()
        assert again["mammography_result"] == mammo["mammography_result"]
        chest = p.get(f"/v1/studies/{chest_ids[1]}").json()
        assert p.get(chest["images"][0]["url"]).status_code == 200
        r = d.post(f"/v1/consultations/{cid}/reply", json={"answer": "See a clinician."})
        assert r.status_code == 200, r.text
        assert p.get(f"/v1/consultations/{cid}").json()["answer"] == "See a clinician."

        # and new work goes through the survivors, live progress included
        r = p.post("/v1/studies/chest", files={"file": ("y.png", chest_png(seed=7), "image/png")})
        assert r.status_code == 201, r.text
        assert _mammography(p)["status"] == "succeeded"
        assert p.get("/v1/studies").json()["total"] == 6
