"""The port tb_service's worker processes share: its connections are accepted with
TCP_NODELAY on, whichever event loop the workers run (asyncio sets it only on sockets it
created itself; without it every answer waited 40 ms for the client's delayed ACK)."""

from __future__ import annotations

import socket

from uvicorn import Config

from shared.workers import listening_socket
from tests.procs import free_port


def test_connections_on_the_shared_port_are_accepted_with_nodelay() -> None:
    listener = listening_socket(
        Config("tb_service.app:create_app", host="127.0.0.1", port=free_port())
    )
    try:
        listener.listen()  # as each worker's server does with it
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
