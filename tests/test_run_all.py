"""``make run`` (scripts/run_all.py) as a supervisor, over real processes and HTTP: the port
settings are honoured, a killed inference service comes back while the gateway keeps answering
(503 for what needs it), and a port in use stops it before anything starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.onnxgen import chest_model_folders
from tests.procs import REPO, free_port
from tests.tb_service.svc_helpers import chest_png

STARTED = re.compile(r"started (\w+) \(pid (\d+)\) on [\d.]+:(\d+)")


class RunAll:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def started(self, name: str) -> list[int]:
        return [int(m[1]) for m in STARTED.findall(self.output()) if m[0] == name]

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output()):
            assert self.proc.poll() is None, f"run_all exited:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r}:\n{self.output()[-4000:]}"
            time.sleep(0.3)


@contextmanager
def run_all(tmp: Path, env: dict[str, str]) -> Iterator[RunAll]:
    full = dict(os.environ)
    full.update(
        {
            "PYTHONPATH": str(REPO),
            "IRMI_DEV_MODE": "1",
            "IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'irmi.db'}",
            "IRMI_GATEWAY_STORE_DIR": str(tmp / "images"),
            "IRMI_TB_USE_GPU": "false",
            "IRMI_BC_USE_GPU": "false",
            "IRMI_BC_REQUIRED_MODELS": "[]",
        }
    )
    for key in ("IRMI_GATEWAY_TB_URL", "IRMI_GATEWAY_BC_URL", "IRMI_RUN_HOST"):
        full.pop(key, None)
    full.update(env)
    log = tmp / "run_all.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "run_all.py")],
            env=full,
            cwd=str(REPO),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    runner = RunAll(proc, log)
    try:
        yield runner
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pids in (runner.started(n) for n in ("tb_service", "bc_service", "gateway")):
            for pid in pids:  # never leave a child behind, even when the test failed
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_ports_honoured_and_a_killed_service_comes_back(tmp_path: Path) -> None:
    gw_port, tb_port, bc_port = free_port(), free_port(), free_port()
    env = {
        "IRMI_GATEWAY_PORT": str(gw_port),
        "IRMI_TB_PORT": str(tb_port),
        "IRMI_BC_PORT": str(bc_port),
        "IRMI_TB_MODELS_DIR": str(chest_model_folders(tmp_path / "tb-models")),
    }
    with run_all(tmp_path, env) as ra:
        ra.wait_for("IRMI is up", timeout=240)
        assert f"http://127.0.0.1:{gw_port}" in ra.output()
        for port in (gw_port, tb_port, bc_port):  # each on the port its setting names
            assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200
        gw = f"http://127.0.0.1:{gw_port}"
        token = _signup(gw)
        key = httpx.post(
            gw + "/v1/api-keys",
            json={"name": "t", "scopes": ["predict"]},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["key"]
        image = chest_png(64, 64)

        def predict() -> httpx.Response:
            return httpx.post(
                gw + "/v1/predict/chest",
                files={"file": ("x.png", image, "image/png")},
                headers={"X-API-Key": key},
                timeout=30,
            )

        assert predict().status_code in {200, 422}  # the gateway reaches tb_service's port

        (tb_pid,) = ra.started("tb_service")
        gw_pids = ra.started("gateway")
        os.kill(tb_pid, signal.SIGKILL)
        ra.wait_for("tb_service EXITED", timeout=20)
        # Meanwhile the gateway answers: its UI and health, and 503 for what needs tb_service.
        assert httpx.get(gw + "/").status_code == 200
        assert httpx.get(gw + "/v2/health/live").status_code == 200
        down = predict()
        if ra.started("tb_service") == [tb_pid]:  # not restarted yet (1 s backoff + start-up)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "service_unavailable"
            assert "retry-after" in down.headers

        ra.wait_for(r"tb_service is ready again", timeout=120)
        new = ra.started("tb_service")
        assert len(new) == 2 and new[1] != tb_pid
        assert predict().status_code in {200, 422}
        assert ra.started("gateway") == gw_pids and _alive(gw_pids[0])  # never restarted
        assert _alive(ra.started("bc_service")[0])

        ra.proc.send_signal(signal.SIGTERM)
        assert ra.proc.wait(timeout=40) == 0
        time.sleep(0.5)
        assert not any(_alive(p) for p in [new[1], *gw_pids, *ra.started("bc_service")])


def _signup(gw: str) -> str:
    body = {"email": "run@example.org", "password": "s3cure-password", "full_name": "Run"}
    assert httpx.post(gw + "/v1/auth/signup", json=body).status_code == 201
    login = httpx.post(gw + "/v1/auth/login", json={k: body[k] for k in ("email", "password")})
    return str(login.json()["access_token"])


def test_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    gw_port, bc_port = free_port(), free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = {
            "IRMI_GATEWAY_PORT": str(gw_port),
            "IRMI_TB_PORT": str(taken),
            "IRMI_BC_PORT": str(bc_port),
        }
        with run_all(tmp_path, env) as ra:
            code = ra.proc.wait(timeout=60)
            out = ra.output()
    assert code == 2, out
    assert f"port {taken}" in out and "IRMI_TB_PORT" in out, out
    assert "IRMI is up" not in out
    assert ra.started("tb_service") == ra.started("gateway") == ra.started("bc_service") == []


def test_two_services_on_one_port_are_refused(tmp_path: Path) -> None:
    port = free_port()
    env = {"IRMI_GATEWAY_PORT": str(port), "IRMI_TB_PORT": str(port)}
    with run_all(tmp_path, env) as ra:
        code = ra.proc.wait(timeout=60)
        out = ra.output()
    assert code == 2 and f"port {port}" in out and "IRMI is up" not in out, out
