"""Start gateway (8000), tb_service (8001) and bc_service (8002) together: ``make run``.

Ctrl-C (or SIGTERM) stops all three cleanly. A service that exits on its own is reported
loudly and the others are stopped too, so nothing runs half-up unnoticed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

SERVICES = [("tb_service", 8001), ("bc_service", 8002), ("gateway", 8000)]
HOST = os.environ.get("IRMI_RUN_HOST", "127.0.0.1")


def banner(text: str) -> None:
    line = "!" * 78
    print(f"\n{line}\n{text}\n{line}\n", file=sys.stderr, flush=True)


def wait_ready(port: int, procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    env = dict(os.environ)
    env.setdefault("IRMI_DEV_MODE", "1")
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for name, port in SERVICES:
        procs[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", name, "--host", HOST, "--port", str(port)],
            env=env,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the children in order
        )
    for name, port in SERVICES:
        if not wait_ready(port, procs, timeout=120):
            dead = [n for n, p in procs.items() if p.poll() is not None]
            banner(f"IRMI: {name} did not become ready (exited: {dead or 'none'}); stopping all.")
            stop_all(procs)
            return 1
    print(
        f"\nIRMI is up: web UI and API on http://{HOST}:8000 "
        f"(tb_service :8001, bc_service :8002). Ctrl-C stops all.\n",
        flush=True,
    )
    while not stopping:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                banner(f"IRMI: {name} EXITED with code {code}; stopping the other services.")
                stop_all(procs)
                return 1
        time.sleep(0.5)
    print("\nIRMI: stopping...", flush=True)
    stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
