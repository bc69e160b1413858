"""/docs (Swagger UI) and /redoc render the API reference offline: every request that leaves
loopback is blocked (and must not even be tried), the pages load only the gateway's packaged
assets, and they run under their CSP without a single violation (the start-up scripts are
files, not inline). Screenshots go to tests/artifacts/screenshots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.openapi_export import DEFAULT_PATH
from tests.procs import Service, spawn, wait_ready
from tests.web.conftest import DESKTOP, LOGS, SHOTS, gateway_env

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Collected inside the page: violations of its CSP, reported by the browser itself.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("docs")
    dead = "http://127.0.0.1:9"  # the docs need no inference service
    gw = spawn("gateway", gateway_env(tmp, dead, dead), log_dir=LOGS)
    try:
        wait_ready(gw, timeout=90)
        yield gw
    finally:
        gw.stop()


class OfflinePage:
    """A page on which only loopback answers; it records what was blocked and every console
    error and CSP violation."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.ctx = browser.new_context(viewport=DESKTOP, base_url=base_url)
        self.ctx.set_default_timeout(30_000)
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.ctx.route("**/*", self._route)
        self.ctx.add_init_script(WATCH_CSP)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )

    def _route(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"} or parts.hostname in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__csp")
        return found

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture()
def offline(browser: Any, gateway: Service) -> Iterator[OfflinePage]:
    page = OfflinePage(browser, gateway.url)
    try:
        yield page
    finally:
        page.close()


def _operation_count() -> int:
    doc = json.loads(DEFAULT_PATH.read_text())
    return sum(len(methods) for methods in doc["paths"].values())


def _clean(offline: OfflinePage) -> None:
    assert not offline.blocked, f"tried to leave loopback: {offline.blocked}"
    assert not offline.violations(), offline.violations()
    assert not offline.errors, offline.errors


def test_swagger_ui_renders_every_operation_offline(offline: OfflinePage) -> None:
    page = offline.page
    response = page.goto("/docs")
    assert response is not None and response.ok
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    page.wait_for_selector(".opblock")
    shown = page.locator(".opblock-summary-operation-id").all_inner_texts()
    assert len(set(shown)) == _operation_count(), shown  # one may sit under two tags
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "docs-swagger-desktop.png"), full_page=False)
    # The hand-chosen ids are shown; the chest upload's file part is a file input.
    upload = page.locator(".opblock").filter(has_text="uploadChestStudy")
    upload.locator(".opblock-summary").click()
    upload.get_by_role("button", name="Try it out").click()
    assert upload.locator("input[type=file]").count() == 1
    page.wait_for_timeout(300)  # let the expanded section settle before the picture
    upload.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "docs-swagger-upload.png"), full_page=False)
    _clean(offline)


def test_redoc_renders_offline(offline: OfflinePage) -> None:
    page = offline.page
    response = page.goto("/redoc")
    assert response is not None and response.ok
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.wait_for_selector("h2:has-text('Upload a chest X-ray')")
    assert page.get_by_text("StudyResultEvent").count() >= 1  # the SSE payload schemas
    page.wait_for_timeout(300)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "docs-redoc-desktop.png"), full_page=False)
    _clean(offline)


def test_docs_assets_are_the_gateways_own(gateway: Service) -> None:
    """The pages reference only the gateway's own files; nothing from a CDN."""
    import httpx

    for path in ("/docs", "/redoc"):
        html = httpx.get(gateway.url + path).text
        assert "http://" not in html and "https://" not in html, path
        assert "<script>" not in html, f"{path}: inline script"
