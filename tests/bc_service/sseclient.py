"""A small SSE reader over httpx for the bc_service tests (no extra dependency)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: str
    id: int | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Stream:
    response: httpx.Response
    comments: list[str] = field(default_factory=list)

    def events(self) -> Iterator[Event]:
        kind, data, ev_id = "message", [], None
        for line in self.response.iter_lines():
            if line == "":
                if data:
                    yield Event(kind, "\n".join(data), ev_id)
                kind, data, ev_id = "message", [], None
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    ev_id = int(value)


def read_all(client: httpx.Client, method: str, url: str, **kw: Any) -> tuple[list[Event], Stream]:
    with client.stream(method, url, **kw) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        s = Stream(r)
        return list(s.events()), s


def wait_status(client: httpx.Client, url: str, limit_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        body: dict[str, Any] = client.get(url).json()
        if body["status"] in {"succeeded", "failed", "cancelled"}:
            return body
        assert time.monotonic() < deadline, f"exam still {body['status']}"
        time.sleep(0.1)
