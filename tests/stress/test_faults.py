"""Faults over real HTTP with the real services: an inference service stopped mid-request, a
gateway restarted, a client that drops its event stream, a mammography service that dies
mid-exam. The gateway answers 503 (never hangs past its timeout), recovers once the service is
back, loses no study, and no study stays "running".

(Upstream down from the start, a hanging upstream and a fake bc dying mid-exam are in
tests/gateway/test_failures.py; here the real services are stopped and restarted.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bc_service.images import HAVE_MIAS, mammogram
from tests.procs import Service, free_port, spawn, wait_ready
from tests.stress.system import bc_env, signup, start_gateway, tb_env
from tests.tb_service.svc_helpers import chest_png

GW_TIMEOUT_S = 3
WINDOW_S = 20  # the gateway's exam retry window in these tests
OUTAGE_S = 10  # bc_service unavailable this long mid-exam (start-up included): no exam lost
LONG_FAULTS = os.environ.get("IRMI_TEST_LONG_FAULTS", "").lower() in {"1", "true", "yes"}
# Keeps an exam running for a few seconds so that it can be interrupted mid-way.
BC_SLOW = {"IRMI_BC_DEBUG_STAGE_DELAY_MS": "200", "IRMI_BC_HEARTBEAT_SECONDS": "0.2"}
if not HAVE_MIAS:
    BC_SLOW["IRMI_BC_MAMMOGRAM_GATE"] = "false"


class Stack:
    """tb_service, bc_service and a gateway on fixed ports, each restartable in place."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.secret = "faults-secret-" + uuid.uuid4().hex
        self.tb_port, self.bc_port = free_port(), free_port()
        self.tb = self._tb()
        self.bc = self._bc()
        wait_ready(self.tb, 180)
        wait_ready(self.bc, 180)
        self.gw = self.start_gw()
        self.token, self.key = signup(self.gw.url)

    def _tb(self) -> Service:
        env = tb_env(self.tmp / "tb-models", IRMI_TB_LOG_LEVEL="WARNING")
        return spawn("tb_service", env, port=self.tb_port, log_dir=self.tmp)

    def _bc(self) -> Service:
        env = bc_env(IRMI_BC_LOG_LEVEL="WARNING", **BC_SLOW)
        return spawn("bc_service", env, port=self.bc_port, log_dir=self.tmp)

    def start_gw(
        self, database_url: str | None = None, tmp: Path | None = None, **extra: str
    ) -> Service:
        env = {"IRMI_GATEWAY_EXAM_RETRY_WINDOW_S": str(WINDOW_S), **extra}
        return start_gateway(
            tmp or self.tmp,
            database_url or self.database_url,
            f"http://127.0.0.1:{self.tb_port}",
            f"http://127.0.0.1:{self.bc_port}",
            IRMI_GATEWAY_TB_TIMEOUT_S=str(GW_TIMEOUT_S),
            IRMI_GATEWAY_BC_TIMEOUT_S=str(GW_TIMEOUT_S),
            IRMI_GATEWAY_UPSTREAM_RETRY_AFTER_S="2",
            IRMI_GATEWAY_JWT_SECRET=self.secret,  # tokens outlive a gateway restart
            **env,
        )

    def restart_tb(self) -> None:
        self.tb.stop()
        self.tb = self._tb()
        wait_ready(self.tb, 180)

    def restart_bc(self) -> None:
        self.bc.stop()
        self.bc = self._bc()
        wait_ready(self.bc, 180)

    def client(self, gw: Service | None = None, token: str | None = None) -> httpx.Client:
        # The client waits far longer than the gateway's upstream timeout: a hung gateway
        # would show up as a client timeout (a failure), a healthy one answers 503 first.
        return httpx.Client(
            base_url=(gw or self.gw).url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=GW_TIMEOUT_S + 60,
        )

    def stop(self) -> None:
        for svc in (self.gw, self.bc, self.tb):
            svc.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    s = Stack(tmp, f"sqlite+aiosqlite:///{tmp / 'gw.db'}")
    try:
        yield s
    finally:
        s.stop()


def _family(pid: int) -> list[int]:
    """``pid`` and its child processes (tb_service's worker processes share its port)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def _kill_mid_request(svc: Service, send: Any) -> httpx.Response:
    """Freeze ``svc`` (all its processes), start ``send()`` (which reaches the frozen
    service), kill the service while the request is in flight; return the gateway's answer."""
    family = _family(svc.proc.pid)
    for pid in family:
        os.kill(pid, signal.SIGSTOP)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", send()))
    t.start()
    time.sleep(1.0)  # the request is now accepted by the frozen service's socket
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    svc.proc.wait()
    t.join(GW_TIMEOUT_S + 90)
    assert "r" in out, "the gateway never answered"
    resp: httpx.Response = out["r"]
    return resp


def _wait_terminal(c: httpx.Client, url: str, limit_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        body: dict[str, Any] = c.get(url).json()
        if body["status"] in {"succeeded", "failed"}:
            return body
        assert time.monotonic() < deadline, f"study stuck: {body}"
        time.sleep(0.1)


def _assert_503(r: httpx.Response, upstream: str) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert r.json()["error"]["details"]["upstream"] == upstream
    assert int(r.headers["retry-after"]) > 0


def test_tb_stopped_mid_request_then_recovers(stack: Stack) -> None:
    with stack.client() as c:
        before = c.get("/v1/studies").json()["total"]
        r = _kill_mid_request(
            stack.tb,
            lambda: c.post(
                "/v1/studies/chest", files={"file": ("x.png", chest_png(seed=7), "image/png")}
            ),
        )
        _assert_503(r, "tb_service")
        # down: refused at once, still 503
        r = c.post("/v1/predict/chest", files={"file": ("x.png", chest_png(), "image/png")})
        assert r.status_code in {401, 403, 503}
        r = httpx.post(
            stack.gw.url + "/v1/predict/chest",
            files={"file": ("x.png", chest_png(), "image/png")},
            headers={"X-API-Key": stack.key},
            timeout=GW_TIMEOUT_S + 60,
        )
        _assert_503(r, "tb_service")
        assert c.get("/v1/studies").json()["total"] == before  # nothing half-created
        stack.restart_tb()
        r = c.post("/v1/studies/chest", files={"file": ("x.png", chest_png(seed=8), "image/png")})
        assert r.status_code == 201, r.text
        assert c.get("/v1/studies").json()["total"] == before + 1
        assert httpx.get(stack.gw.url + "/v2/health/ready").status_code == 200


MAMMO = [
    ("L-MLO", ("a.png", mammogram(), "image/png")),
    ("R-MLO", ("b.png", mammogram(right=True), "image/png")),
]


def _own_gateway(stack: Stack, tmp: Path, window_s: float) -> tuple[Service, str]:
    """A gateway of its own (database and store in ``tmp``) with another retry window."""
    gw = stack.start_gw(
        f"sqlite+aiosqlite:///{tmp / 'gw.db'}", tmp, IRMI_GATEWAY_EXAM_RETRY_WINDOW_S=str(window_s)
    )
    return gw, signup(gw.url)[0]


def _bc_startup_s(stack: Stack) -> float:
    """How long a bc_service takes to become ready on this machine now (a throwaway one on
    another port): the restart below is started that much before the outage should end, so
    that bc_service is unavailable for the outage asked, start-up included."""
    t0 = time.monotonic()
    probe = spawn("bc_service", bc_env(IRMI_BC_LOG_LEVEL="WARNING", **BC_SLOW), log_dir=stack.tmp)
    try:
        wait_ready(probe, 180)
    finally:
        probe.stop()
    return time.monotonic() - t0


def _exams_survive_bc_outage(
    stack: Stack, gw: Service, outage_s: float, token: str | None = None
) -> None:
    """Three exams in flight, bc_service killed while they run and back (ready, on the same
    port) ``outage_s`` later: every exam ends succeeded (each re-submitted from its stored
    images); meanwhile new exams are refused with 503, never accepted and lost."""
    startup_s = _bc_startup_s(stack)
    with stack.client(gw, token) as c:
        urls = []
        for _ in range(3):
            r = c.post("/v1/studies/mammography", files=MAMMO)
            assert r.status_code == 202, r.text
            urls.append(r.json()["study_url"])
        deadline = time.monotonic() + 60
        while c.get(urls[0]).json()["status"] != "running":  # the pipeline has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.bc.proc.kill()
        stack.bc.proc.wait()
        killed = time.monotonic()
        r = c.post("/v1/studies/mammography", files=MAMMO)
        _assert_503(r, "bc_service")
        assert [c.get(u).json()["status"] for u in urls] != ["failed"] * 3
        # start the restart a little less than a start-up early: the outage errs long
        time.sleep(max(0.0, outage_s - 0.75 * startup_s - (time.monotonic() - killed)))
        stack.bc = stack._bc()  # same port
        wait_ready(stack.bc, 180)
        down_s = time.monotonic() - killed  # bc_service unavailable this long, start-up included
        assert down_s >= 0.9 * outage_s, f"the outage lasted only {down_s:.1f} s"
        studies = [_wait_terminal(c, u, limit_s=240) for u in urls]
        lost = [(s["id"], s["error"]) for s in studies if s["status"] != "succeeded"]
        assert not lost, (f"bc_service down {down_s:.1f} s", lost)
        print(f"bc_service down {down_s:.1f} s (start-up {startup_s:.1f} s): 3 of 3 exams kept")
        for study in studies:
            assert len(study["mammography_result"]["views"]) == 2
        with c.stream("GET", urls[0] + "/events") as resp:
            assert "event: retry" in "".join(resp.iter_text())


def test_bc_restarted_mid_exam_loses_no_exam(stack: Stack) -> None:
    _exams_survive_bc_outage(stack, stack.gw, OUTAGE_S)


@pytest.mark.slow
@pytest.mark.skipif(not LONG_FAULTS, reason="60 s outage: make fault (IRMI_TEST_LONG_FAULTS=1)")
def test_bc_down_a_minute_mid_exam_loses_no_exam(stack: Stack, tmp_path: Path) -> None:
    """The default window (about 2 minutes) outlasts a 60 s bc_service outage."""
    gw, token = _own_gateway(stack, tmp_path, 120)
    try:
        _exams_survive_bc_outage(stack, gw, 60, token)
    finally:
        gw.stop()


def test_bc_killed_for_good_fails_exam_after_window(stack: Stack, tmp_path: Path) -> None:
    """bc_service gone longer than the window: the exam ends failed, never stuck running."""
    gw, token = _own_gateway(stack, tmp_path, 3)
    try:
        with stack.client(gw, token) as c:
            r = c.post("/v1/studies/mammography", files=MAMMO)
            assert r.status_code == 202, r.text
            url = r.json()["study_url"]
            deadline = time.monotonic() + 60
            while c.get(url).json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            stack.bc.proc.kill()
            stack.bc.proc.wait()
            study = _wait_terminal(c, url)
            assert study["status"] == "failed", study
            assert study["error"]["code"] == "service_unavailable"
            assert study["error"]["details"]["window_s"] == 3
    finally:
        gw.stop()
        stack.restart_bc()
    with stack.client() as c:
        r = c.post("/v1/studies/mammography", files=MAMMO)
        assert r.status_code == 202, r.text
        study = _wait_terminal(c, r.json()["study_url"])
        assert study["status"] == "succeeded", study


def test_bc_frozen_mid_request_is_503(stack: Stack) -> None:
    r = _kill_mid_request(
        stack.bc,
        lambda: httpx.post(
            stack.gw.url + "/v1/predict/mammogram",
            files=MAMMO,
            headers={"X-API-Key": stack.key},
            timeout=GW_TIMEOUT_S + 60,
        ),
    )
    _assert_503(r, "bc_service")
    stack.restart_bc()


def test_client_dropping_sse_mid_exam(stack: Stack) -> None:
    """Through the gateway and straight on bc_service: the exam goes on without a listener."""
    with stack.client() as c:
        r = c.post("/v1/studies/mammography", files=MAMMO)
        assert r.status_code == 202, r.text
        accepted = r.json()
        with c.stream("GET", accepted["events_url"]) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: progress"):
                    break  # drop the stream after the first progress event
        study = _wait_terminal(c, accepted["study_url"])
        assert study["status"] == "succeeded", study
        assert c.get(study["mammography_result"]["views"][0]["heatmaps"]["score_map"]["url"])
    # bc_service in stream mode: the submitting client drops the stream
    exam_id = None
    with httpx.Client(base_url=stack.bc.url, timeout=60) as bc:
        with bc.stream("POST", "/v1/exams", params={"stream": "true"}, files=MAMMO) as resp:
            assert resp.status_code < 300
            for line in resp.iter_lines():
                if line.startswith("data:") and exam_id is None:
                    exam_id = json.loads(line[5:]).get("id")
                if line.startswith("event: progress"):
                    break
        assert exam_id
        deadline = time.monotonic() + 120
        while (exam := bc.get(f"/v1/exams/{exam_id}").json())["status"] not in {
            "succeeded",
            "failed",
            "cancelled",
        }:
            assert time.monotonic() < deadline, exam
            time.sleep(0.1)
        assert exam["status"] == "succeeded", exam


def test_gateway_restart_loses_no_study(stack: Stack, database_url: str, tmp_path: Path) -> None:
    """Studies written before a gateway stop are all there after its restart (same database
    and image store); an exam cut by the stop ends failed, never stuck running."""
    gw = stack.start_gw(database_url, tmp_path)
    try:
        token, _ = signup(gw.url)
        with stack.client(gw, token) as c:
            ids = []
            for i in range(3):
                r = c.post(
                    "/v1/studies/chest",
                    files={"file": ("x.png", chest_png(seed=100 + i), "image/png")},
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            r = c.post("/v1/studies/mammography", files=MAMMO)
            assert r.status_code == 202
            done = _wait_terminal(c, r.json()["study_url"])
            assert done["status"] == "succeeded"
            ids.append(done["id"])
            r = c.post("/v1/studies/mammography", files=MAMMO)  # cut by the stop below
            assert r.status_code == 202
            cut = r.json()["id"]
            before = {i: c.get(f"/v1/studies/{i}").json() for i in ids}
        gw.stop()
        gw = stack.start_gw(database_url, tmp_path)
        with stack.client(gw, token) as c:
            page = c.get("/v1/studies", params={"limit": 100})
            assert page.status_code == 200, page.text
            assert {x["id"] for x in page.json()["items"]} == set(ids) | {cut}
            for i in ids:
                after = c.get(f"/v1/studies/{i}").json()
                assert after["status"] == before[i]["status"] == "succeeded"
                assert after["images"] == before[i]["images"]
                for img in after["images"]:
                    assert c.get(img["url"]).status_code == 200
            # the exam running when the gateway stopped ended (failed), it is not "running"
            assert _wait_terminal(c, f"/v1/studies/{cut}")["status"] in {"failed", "succeeded"}
    finally:
        gw.stop()
