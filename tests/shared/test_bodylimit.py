"""shared.bodylimit: declared and streamed bodies over the limit get 413 without being read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request

from shared.bodylimit import BodyLimitMiddleware, by_path
from shared.errors import install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/small")
    async def small(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    @app.post("/free")
    async def free(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    app.add_middleware(BodyLimitMiddleware, limit_for=by_path({"/small": 1000}))
    return app


async def test_limits() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/small", content=b"x" * 1000)).json() == {"n": 1000}
        r = await c.post("/small", content=b"x" * 1001)
        assert r.status_code == 413
        assert r.json()["error"] == {
            "code": "payload_too_large",
            "message": "The request body exceeds 1000 bytes.",
            "details": {"max_bytes": 1000, "bytes": 1001},
        }

        async def stream(n: int) -> AsyncIterator[bytes]:
            for _ in range(n):
                yield b"y" * 300

        r = await c.post("/small", content=stream(10))  # chunked: no Content-Length
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert (await c.post("/small", content=stream(3))).json() == {"n": 900}
        assert (await c.post("/free", content=b"z" * 5000)).json() == {"n": 5000}
