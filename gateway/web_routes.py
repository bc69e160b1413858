"""The web UI: static files under ``gateway/web`` served by the gateway itself.

Nothing comes from a CDN (clinics are often offline): ``/`` is the single page and
``/web/...`` its modules, stylesheet and icons. Navigation is hash-based (``/#/studies``), so
no server-side fallback route is needed. The API stays under ``/v1``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.wording import web_module

WEB_DIR = Path(__file__).resolve().parent / "web"

# The page runs only its own modules and styles. Images come from the page itself or are blob:
# URLs: study images need the bearer token, so they are fetched and shown as object URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Revalidate every time (ETag/Last-Modified make that cheap): a new release is seen at once.
_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
_SERVED = (".html", ".js", ".css", ".svg", ".png", ".ico", ".woff2")


class _WebFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        if not path.endswith(_SERVED):  # e.g. the package's __init__.py
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])  # HEAD: uptime checks and link checkers
async def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/web/js/words.js", operation_id="getWebWords", tags=["web"])
async def words() -> Response:
    """What results say, and to whom: generated from :mod:`gateway.wording` (one place)."""
    return Response(web_module(), media_type="text/javascript", headers=_HEADERS)


@router.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    return RedirectResponse("/web/icon.svg", status_code=308)


def include_web(app: FastAPI) -> None:
    """Serve the web UI at ``/``: ``gateway.web.mount``, which ``gateway.app`` calls."""
    app.include_router(router)
    app.mount("/web", _WebFiles(directory=WEB_DIR), name="web")
