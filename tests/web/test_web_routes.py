"""The web UI's files and routes, without a browser: served by the gateway, nothing external."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from gateway.web_routes import CSP, WEB_DIR, include_web


def client() -> httpx.AsyncClient:
    app = FastAPI()
    include_web(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://irmi.test")


async def test_index_is_served_at_root_with_a_strict_csp() -> None:
    async with client() as c:
        resp = await c.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert '<script type="module" src="/web/js/app.js">' in resp.text
    assert "screening aid, not a diagnosis" in resp.text


async def test_assets_are_served_with_their_types() -> None:
    async with client() as c:
        js = await c.get("/web/js/app.js")
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert js.headers["cache-control"] == "no-cache"
        css = await c.get("/web/css/app.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        svg = await c.get("/web/icon.svg")
        assert svg.headers["content-type"].startswith("image/svg")
        fav = await c.get("/favicon.ico", follow_redirects=False)
        assert fav.headers["location"] == "/web/icon.svg"
        assert (await c.get("/web/%2e%2e/app.py")).status_code == 404
        assert (await c.get("/web/__init__.py")).status_code == 404


def test_nothing_is_loaded_from_outside_the_gateway() -> None:
    """Clinics are often offline: no CDN, no external font, no absolute URL in any asset."""
    files = [p for p in WEB_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    for path in files:
        if path.relative_to(WEB_DIR).parts[0] == "vendor":
            # Third-party bundles hold URLs as text (links, schema ids): what they load is
            # checked in a browser that blocks everything off loopback (test_docs_browser).
            continue
        text = path.read_text()
        external = re.findall(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[/"' )]""", text, re.I)
        # The SVG namespace is an identifier, not a download.
        external = [u for u in external if "www.w3.org" not in u]
        assert not external, f"{path.relative_to(WEB_DIR)} refers to {external}"


# Modules the gateway generates (gateway/web_routes.py): the words live in gateway/wording.py.
GENERATED = {"js/words.js"}


def test_every_module_import_resolves() -> None:
    """ES module imports are relative paths to files that exist (no bundler to catch typos)."""
    for path in (WEB_DIR / "js").rglob("*.js"):
        for spec in re.findall(r"""^import .* from "([^"]+)";""", path.read_text(), re.M):
            assert spec.startswith("."), f"{path.name}: bare import {spec!r}"
            target = (path.parent / spec).resolve()
            generated = target.relative_to(WEB_DIR).as_posix() in GENERATED
            assert generated or target.is_file(), f"{path.name}: {spec} missing"
    index = (WEB_DIR / "index.html").read_text()
    for ref in re.findall(r"""(?:src|href)="/web/([^"]+)\"""", index):
        assert (WEB_DIR / ref).is_file(), ref


async def test_the_gateway_mounts_the_ui_through_its_hook() -> None:
    """``gateway.app`` calls ``gateway.web.mount(app)``: the real app serves the page, with its
    own CSP and the gateway's other security headers, and the API document does not list it."""
    from gateway.app import create_app
    from gateway.settings import Settings
    from gateway.wording import web_module

    app = create_app(Settings(dev_mode=True, jwt_secret="test-secret-" * 4))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://irmi.test") as c:
        page = await c.get("/")
        assert page.status_code == 200 and "<main" in page.text
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert (await c.get("/web/js/sse.js")).status_code == 200
        words = await c.get("/web/js/words.js")
        assert words.status_code == 200 and words.headers["content-security-policy"] == CSP
        assert words.headers["content-type"].startswith("text/javascript")
        assert words.text == web_module() and "export const WORDS = {" in words.text
    assert "/" not in app.openapi()["paths"]
