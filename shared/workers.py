"""Several uvicorn worker processes on one port, for a service that keeps no state between
requests (tb_service): one Python process cannot keep two cores busy with the GIL-bound parts
of a request (multipart, JSON, pydantic), several can.

The parent binds the socket, points prometheus-client's multiprocess mode at a fresh metrics
directory (``PROMETHEUS_MULTIPROC_DIR``, :mod:`shared.metrics`), starts ``processes`` workers
(uvicorn's supervisor: a worker that dies is replaced) and stops them on SIGTERM; a parent
killed outright takes its workers with it (:func:`die_with_parent`). Each worker builds its app
from the factory ``app`` (an import string) and the environment. A worker that
fails at start-up (a model's sha256, a card the pipeline disagrees with) stops the parent with
uvicorn's start-up failure status instead of being restarted for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    from uvicorn import Config

log = logging.getLogger("irmi.workers")

STARTUP_FAILURE = 3  # uvicorn's exit status of a server that could not start
PARENT_ENV = "IRMI_WORKERS_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Called in each worker: the kernel kills it when the parent dies (Linux prctl), so a
    supervisor that is killed outright (SIGKILL) leaves no orphan serving the port. A normal
    stop never gets here: the parent stops its workers (SIGTERM, graceful) before it exits."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != int(parent):  # the parent died before the prctl
        os._exit(1)


@contextlib.contextmanager
def metrics_dir(configured: Path | None) -> Iterator[Path]:
    """The multiprocess metrics directory, emptied (values of an earlier run would be summed
    in): ``configured``, or a private one (in /dev/shm where there is one) removed at the end."""
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        for stale in configured.glob("*.db"):
            stale.unlink()
        yield configured
        return
    # In memory: the workers write a value per metric update; mkdtemp makes it private (0700).
    shm = Path("/dev/shm")  # noqa: S108
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="irmi-metrics-", dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def listening_socket(config: Config) -> socket.socket:
    """The port the workers share, bound by the parent.

    Accepted connections inherit TCP_NODELAY from the listening socket. The workers get this
    socket from the parent, and asyncio's loop does not set TCP_NODELAY on it (it checks the
    protocol number, 0 after the hand-over), so every answer's last segment waited for the
    client's delayed ACK (Nagle): 40 ms a request. uvloop sets it itself; this covers both.
    """
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def serve_workers(app: str, processes: int, metrics: Path | None, **uvicorn_options: Any) -> None:
    """Run ``processes`` workers of the app factory ``app`` until SIGTERM (blocking)."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    with metrics_dir(metrics) as folder:
        os.environ[MULTIPROC_ENV] = str(folder)  # inherited by the spawned workers
        os.environ[PARENT_ENV] = str(os.getpid())
        config = Config(app, factory=True, workers=processes, **uvicorn_options)
        supervisor = Multiprocess(config, sockets=[listening_socket(config)])
        log.info("starting workers", extra={"processes": processes, "metrics_dir": str(folder)})
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        log.error("a worker failed to start: stopping")
        sys.exit(STARTUP_FAILURE)
