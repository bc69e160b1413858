"""The API reference pages: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, from assets the
gateway serves itself (``gateway/web/vendor``, pinned in package.json and copied there by
scripts/vendor_docs.py), so they work offline; their start-up scripts are files
(``gateway/web/docs``), so the pages run under a CSP without inline scripts.

ReDoc renders with styled-components, which writes ``<style>`` elements: its page allows
inline styles (never inline scripts). Its search index runs in a worker made from a blob."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from gateway.web_routes import WEB_DIR

DOCS_DIR = WEB_DIR / "docs"
_BASE = (
    "default-src 'self'; script-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SWAGGER_CSP = f"{_BASE}; style-src 'self'; worker-src 'none'"
REDOC_CSP = f"{_BASE}; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"

router = APIRouter(include_in_schema=False)


def _page(name: str, csp: str) -> FileResponse:
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": csp}
    return FileResponse(DOCS_DIR / name, media_type="text/html", headers=headers)


@router.get("/docs")
async def swagger_ui() -> FileResponse:
    return _page("swagger.html", SWAGGER_CSP)


@router.get("/redoc")
async def redoc() -> FileResponse:
    return _page("redoc.html", REDOC_CSP)


def include_docs(app: FastAPI) -> None:
    """Serve the docs pages (their assets are under ``/web``, mounted by the web UI)."""
    app.include_router(router)
