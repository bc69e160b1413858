"""Start tb_service, bc_service and the gateway together and keep them up: ``make run``.

- Addresses come from each service's own settings class (``IRMI_TB_PORT``, ``IRMI_BC_PORT``,
  ``IRMI_GATEWAY_PORT`` and the ``*_HOST`` settings; their defaults 8001, 8002, 8000); the
  gateway is pointed at the inference services' ports unless ``IRMI_GATEWAY_TB_URL`` /
  ``IRMI_GATEWAY_BC_URL`` say otherwise.
- Before anything starts every port is checked: one in use stops here with its name and the
  setting that moves it (exit status 2), never a "up" line for someone else's server.
- A service that stops on its own is restarted with backoff (1 s, doubling to 30 s; back to
  1 s once it has stayed up a minute) while the others keep running: the gateway answers 503
  ``service_unavailable`` for what needs a missing inference service, and the web UI stays.
- A service that cannot become ready at start-up stops everything (exit status 1): a broken
  model or setting should be seen, not retried for ever. Ctrl-C (or SIGTERM) stops all three.
- ``IRMI_RUN_DICOM=1`` also starts the DICOM node (``dicom_node``: health on
  ``IRMI_DICOM_PORT``, default 8003; DICOM on ``IRMI_DICOM_DICOM_PORT``, default 11112), pointed
  at the gateway. Off by default: it needs the integration account's key
  (``IRMI_DICOM_API_KEY``) and ``IRMI_GATEWAY_DICOM_ACCOUNT`` (README "Connect your PACS").
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SERVICES = ("tb_service", "bc_service", "gateway")  # start order; stopped in reverse
DICOM_NODE = "dicom_node"  # started last, with IRMI_RUN_DICOM=1


def services() -> tuple[str, ...]:
    wanted = os.environ.get("IRMI_RUN_DICOM", "").lower() in {"1", "true", "yes"}
    return (*SERVICES, DICOM_NODE) if wanted else SERVICES


READY_TIMEOUT_S = 120.0
BACKOFF_MIN_S, BACKOFF_MAX_S, STABLE_S = 1.0, 30.0, 60.0


@dataclass
class Child:
    name: str
    host: str
    port: int
    prefix: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = BACKOFF_MIN_S
    restart_at: float | None = None
    restarts: int = 0
    announced_ready: bool = False

    @property
    def connect_host(self) -> str:
        return "127.0.0.1" if self.host in {"0.0.0.0", "", "::"} else self.host  # noqa: S104

    @property
    def url(self) -> str:
        return f"http://{self.connect_host}:{self.port}"


def address(name: str) -> Child:
    """Host and port as the service itself will read them: its settings class's defaults and
    env prefix, without validating the rest of its settings (secrets and the like)."""
    settings_cls = importlib.import_module(f"{name}.settings").Settings
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    fields = settings_cls.model_fields

    class Address(BaseSettings):
        model_config = SettingsConfigDict(env_prefix=prefix, extra="ignore")
        host: str = fields["host"].default
        port: int = fields["port"].default

    addr = Address()
    if os.environ.get("IRMI_RUN_HOST"):  # one bind address for all three (older knob)
        addr.host = os.environ["IRMI_RUN_HOST"]
    return Child(name=name, host=addr.host, port=addr.port, prefix=prefix)


def say(text: str) -> None:
    print(f"IRMI: {text}", file=sys.stderr, flush=True)


def banner(text: str) -> None:
    line = "!" * 78
    print(f"\n{line}\nIRMI: {text}\n{line}\n", file=sys.stderr, flush=True)


def port_problem(child: Child) -> str | None:
    """Why the child's port cannot be bound now (None: free). Binds the way uvicorn does
    (SO_REUSEADDR), so a port in TIME_WAIT counts as free."""
    family = socket.AF_INET6 if ":" in child.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((child.host, child.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {child.port} on {child.host} ({child.name}) is already in use by "
                    f"another program: stop it, or choose another port with "
                    f"{child.prefix}PORT=<port>"
                )
            return f"cannot bind {child.host}:{child.port} ({child.name}): {exc.strerror}"
    return None


def preflight(children: list[Child]) -> list[str]:
    problems = []
    seen: dict[int, str] = {}
    for child in children:
        if child.port in seen:
            problems.append(
                f"{child.name} and {seen[child.port]} are both set to port {child.port} "
                f"({child.prefix}PORT)"
            )
            continue
        seen[child.port] = child.name
        problem = port_problem(child)
        if problem:
            problems.append(problem)
    return problems


def spawn(child: Child, env: dict[str, str]) -> None:
    child.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", child.name, "--host", child.host, "--port", str(child.port)],
        env=env,
        cwd=str(REPO),
        start_new_session=True,  # Ctrl-C reaches us, and we stop the children in order
    )
    child.started_at = time.monotonic()
    child.announced_ready = False
    say(f"started {child.name} (pid {child.proc.pid}) on {child.host}:{child.port}")


def is_ready(child: Child, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(child.url + "/v2/health/ready", timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_ready(child: Child, timeout: float, stopping: list[bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping[0]:
        if child.proc is None or child.proc.poll() is not None:
            return False
        if is_ready(child):
            child.announced_ready = True
            return True
        time.sleep(0.3)
    return False


def stop_all(children: list[Child]) -> None:
    running = [c.proc for c in reversed(children) if c.proc is not None]
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(child: Child, env: dict[str, str]) -> None:
    """One look at a child: notice an exit, restart when its backoff is over."""
    now = time.monotonic()
    if child.restart_at is None and child.proc is not None and child.proc.poll() is not None:
        if now - child.started_at >= STABLE_S:
            child.backoff = BACKOFF_MIN_S  # it had been fine for a while: start over quickly
        child.restart_at = now + child.backoff
        banner(
            f"{child.name} EXITED with code {child.proc.returncode}; restarting it in "
            f"{child.backoff:g} s (the other services keep running)."
        )
        child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
        return
    if child.restart_at is not None and now >= child.restart_at:
        problem = port_problem(child)
        if problem:
            child.restart_at = now + child.backoff
            say(f"cannot restart yet: {problem}; next try in {child.backoff:g} s")
            child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
            return
        child.restart_at = None
        child.restarts += 1
        spawn(child, env)
        return
    alive = child.proc is not None and child.proc.poll() is None
    if alive and not child.announced_ready and is_ready(child, timeout=0.5):
        child.announced_ready = True
        say(f"{child.name} is ready again (restart {child.restarts})")


def child_env(children: dict[str, Child]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("IRMI_DEV_MODE", "1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("IRMI_GATEWAY_TB_URL", children["tb_service"].url)
    env.setdefault("IRMI_GATEWAY_BC_URL", children["bc_service"].url)
    env.setdefault("IRMI_DICOM_GATEWAY_URL", children["gateway"].url)
    return env


def main() -> int:
    names = services()
    children = {name: address(name) for name in names}
    order = [children[name] for name in names]
    problems = preflight(order)
    if problems:
        for problem in problems:
            say(problem)
        say("nothing was started.")
        return 2
    env = child_env(children)
    stopping = [False]

    def on_signal(signum: int, _frame: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for child in order:
        spawn(child, env)
    for child in order:
        if not wait_ready(child, READY_TIMEOUT_S, stopping):
            if stopping[0]:
                break
            dead = [c.name for c in order if c.proc is not None and c.proc.poll() is not None]
            banner(f"{child.name} did not become ready (exited: {dead or 'none'}); stopping all.")
            stop_all(order)
            return 1
    if not stopping[0]:
        gw, tb, bc = children["gateway"], children["tb_service"], children["bc_service"]
        print(
            f"\nIRMI is up: web UI and API on {gw.url} (tb_service :{tb.port}, "
            f"bc_service :{bc.port}"
            + (f", DICOM node :{children[DICOM_NODE].port}" if DICOM_NODE in children else "")
            + "). Ctrl-C stops all.\n",
            flush=True,
        )
    while not stopping[0]:
        for child in order:
            supervise(child, env)
        time.sleep(0.5)
    say("stopping...")
    stop_all(order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
