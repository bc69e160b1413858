"""A raw HTTP/1.1 client over a socket for upload tests: sends a body in chunks and stops as
soon as the server answers, reporting how many body bytes it managed to send by then.

httpx writes the whole request before it reads the answer, so it cannot show that a server
refused a body early; this client can (loopback only).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes (without chunk framing) written before the answer was seen
    finished_body: bool  # the whole body was written

    def json(self) -> Any:
        return json.loads(self.body)


def multipart_head(boundary: str, name: str, filename: str, ctype: str = "image/png") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
    ).encode()


def filler(total: int, chunk: int = 64 * 1024) -> Iterable[bytes]:
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield b"\x00" * n
        sent += n


class RawUpload:
    """One request on its own connection; ``send_chunks`` may be called several times (to hold
    a request open half-way), then ``response`` reads the answer."""

    def __init__(self, port: int, path: str, headers: dict[str, str], chunked: bool) -> None:
        self.chunked = chunked
        self.sent = 0
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        # A small send buffer, so "sent" stays close to what the server has taken in.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.answered = False

    def _readable(self, wait: float = 0.0) -> bool:
        return bool(select.select([self.sock], [], [], wait)[0])

    def send_chunks(self, chunks: Iterable[bytes]) -> bool:
        """Write the chunks until the server answers (or closes); True when all were written."""
        for chunk in chunks:
            if self._readable():
                self.answered = True
                return False
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if self.chunked else chunk
            try:
                self.sock.sendall(frame)
            except OSError:  # the server answered and closed while we wrote
                self.answered = True
                return False
            self.sent += len(chunk)
        return True

    def finish(self) -> None:
        if self.chunked and not self.answered:
            try:
                self.sock.sendall(b"0\r\n\r\n")
            except OSError:
                self.answered = True

    def response(self, finished: bool, timeout: float = 60.0) -> RawResponse:
        """Read the answer (until its Content-Length is complete or the server closes)."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            parsed = _parse(buf)
            if parsed is not None and len(parsed[2]) >= int(parsed[1].get("content-length", -1)):
                break
            if not self._readable(0.5):
                continue
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            buf += data
        self.sock.close()
        parsed = _parse(buf)
        if parsed is None:
            raise AssertionError(f"no HTTP answer; got {buf[:200]!r} after {self.sent} bytes")
        status, headers, body = parsed
        if "content-length" in headers:
            body = body[: int(headers["content-length"])]
        return RawResponse(status, headers, body, self.sent, finished)

    def close(self) -> None:
        self.sock.close()


def _parse(buf: bytes) -> tuple[int, dict[str, str], bytes] | None:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    return int(lines[0].split()[1]), headers, buf[end + 4 :]


def post_stream(
    port: int,
    path: str,
    chunks: Iterable[bytes],
    headers: dict[str, str],
    chunked: bool = True,
) -> RawResponse:
    """POST the chunks (chunked transfer unless ``chunked`` is False: then the headers carry a
    Content-Length), stopping at the server's answer."""
    up = RawUpload(port, path, headers, chunked)
    finished = up.send_chunks(chunks)
    if finished:
        up.finish()
    return up.response(finished)
