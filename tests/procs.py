"""Start real IRMI services as subprocesses on 127.0.0.1 for integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def spawn(
    module: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
) -> Service:
    port = port or free_port()
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO)
    full_env.setdefault("IRMI_DEV_MODE", "1")
    full_env.update(env or {})
    log_dir = log_dir or Path(os.environ.get("IRMI_TEST_LOGS", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{module}-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        cwd=str(REPO),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Service(module, port, proc, log_path)


def wait_ready(svc: Service, timeout: float = 60.0, path: str = "/v2/health/ready") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(
                f"{svc.name} exited with {svc.proc.returncode}:\n{svc.logs()[-3000:]}"
            )
        try:
            if httpx.get(svc.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    svc.stop()
    raise TimeoutError(f"{svc.name} not ready in {timeout}s:\n{svc.logs()[-3000:]}")


@contextmanager
def running(
    module: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[Service]:
    svc = spawn(module, env)
    try:
        wait_ready(svc, timeout)
        yield svc
    finally:
        svc.stop()


def served_version(models: Path, model: str) -> str:
    """The version folder a service loads: the highest number under ``models/model``."""
    return max((p.parent.name for p in (models / model).glob("*/card.json")), key=int)


def refusal_of_tampered_step(
    module: str, models: Path, tmp: Path, model: str, stage: str, param: str, value: object
) -> tuple[int, str]:
    """Start ``module`` on a copy of the model repository ``models`` in which the card of
    ``model``'s served (highest) version records ``value`` for preprocessing step ``stage``'s
    ``param``: its exit status and its logs (it must refuse to start)."""
    import json
    import shutil

    copy = tmp / "models"
    shutil.copytree(models, copy)
    card_path = copy / model / served_version(copy, model) / "card.json"
    card = json.loads(card_path.read_text())
    (step,) = (s for s in card["preprocessing"]["steps"] if s["stage"] == stage)
    step["params"][param] = value
    card_path.write_text(json.dumps(card))
    prefix = {"tb_service": "IRMI_TB_", "bc_service": "IRMI_BC_"}[module]
    return exit_of(module, {prefix + "MODELS_DIR": str(copy), prefix + "USE_GPU": "false"})


def run_module(
    args: list[str], env: dict[str, str | None], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root, its output captured. ``env`` adds to this
    process's environment (a ``None`` value unsets the variable)."""
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run(
        [sys.executable, "-m", *args],
        input=stdin,
        env=full,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def exit_of(module: str, env: dict[str, str], timeout: float = 120.0) -> tuple[int, str]:
    """Start ``module`` expecting it to refuse to start: its exit status and its logs."""
    svc = spawn(module, env)
    deadline = time.monotonic() + timeout
    while svc.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    code = svc.stop()
    return code, svc.logs()
