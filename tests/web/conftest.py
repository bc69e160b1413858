"""Browser tests: the real gateway, tb_service and bc_service on loopback, driven by Debian's
headless chromium through Playwright (never `playwright install`: nothing is downloaded)."""

from __future__ import annotations

import contextlib
import csv
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.settings import default_data_dir
from tests.procs import REPO, Service, spawn, wait_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"
SHOTS = ARTIFACTS / "screenshots"
LOGS = ARTIFACTS / "web-logs"  # service logs of the last browser run (git-ignored)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

TB_MODELS = ("chest-gate", "chest-abnormality", "lung-seg")
BC_MODELS = ("mammo-gate", "mammo-patch", "mammo-view")


def _has_models(models_dir: Path, names: tuple[str, ...]) -> bool:
    return all(any(models_dir.glob(f"{n}/*/model.onnx")) for n in names)


def real_chest_models() -> bool:
    return _has_models(REPO / "tb_service" / "models", TB_MODELS)


def real_mammo_models() -> bool:
    return _has_models(REPO / "bc_service" / "models", BC_MODELS)


@dataclass
class Stack:
    gateway: Service
    tb: Service
    bc: Service
    real_chest: bool
    real_mammo: bool
    database_url: str = ""

    @property
    def url(self) -> str:
        return self.gateway.url


def gateway_env(tmp: Path, tb_url: str, bc_url: str, **extra: str) -> dict[str, str]:
    env = {
        "IRMI_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'irmi.db'}",
        "IRMI_GATEWAY_STORE_DIR": str(tmp / "images"),
        "IRMI_GATEWAY_TB_URL": tb_url,
        "IRMI_GATEWAY_BC_URL": bc_url,
        "IRMI_GATEWAY_LOGIN_CLIENT_FREE_FAILURES": "200",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (.ci/run installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("web-stack")
    logs = LOGS
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(SHOTS, ignore_errors=True)  # only this run's screenshots remain
    tb_env: dict[str, str] = {"IRMI_TB_USE_GPU": "false"}
    real_chest = real_chest_models()
    if not real_chest:
        # Until trained models are merged: tiny models with the real models' inputs/outputs.
        from tests.onnxgen import chest_model_folders

        tb_env["IRMI_TB_MODELS_DIR"] = str(chest_model_folders(tmp / "tb-models"))
    bc_env: dict[str, str] = {
        "IRMI_BC_USE_GPU": "false",
        # Slow each stage down a little so the progress bar visibly moves in the browser.
        "IRMI_BC_DEBUG_STAGE_DELAY_MS": "60",
    }
    real_mammo = real_mammo_models()
    if not real_mammo:
        bc_env["IRMI_BC_REQUIRED_MODELS"] = "[]"  # the pipeline's heuristic fallbacks
    started: list[Service] = []
    try:
        tb = spawn("tb_service", tb_env, log_dir=logs)
        started.append(tb)
        bc = spawn("bc_service", bc_env, log_dir=logs)
        started.append(bc)
        gw = spawn("gateway", gateway_env(tmp, tb.url, bc.url), log_dir=logs)
        started.append(gw)
        for svc in started:
            wait_ready(svc, timeout=120)
        yield Stack(gw, tb, bc, real_chest, real_mammo, f"sqlite+aiosqlite:///{tmp / 'irmi.db'}")
    finally:
        for svc in reversed(started):
            svc.stop()


# Module scope: sync Playwright keeps an event loop running while it is open, which async
# tests elsewhere in the session must not find.
@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


class Pages:
    """New browser contexts (one per user) that fail the test on any page error."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def new(self) -> Any:
        ctx = self.browser.new_context(viewport=DESKTOP, base_url=self.base_url)
        ctx.set_default_timeout(30_000)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"console: {m.text}")
                if m.type == "error" and "status of" not in m.text
                else None
            ),
        )
        return page

    def snapshot(self, prefix: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for i, ctx in enumerate(self.contexts):
            for j, page in enumerate(ctx.pages):
                page.screenshot(path=str(SHOTS / f"{prefix}-{i}-{j}.png"), full_page=True)

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.stash[FAILED] = rep.failed
    return rep


FAILED = pytest.StashKey[bool]()


@contextlib.contextmanager
def own_gateway_pages(browser: Any, env: dict[str, str]) -> Iterator[Pages]:
    """A gateway of the test's own (``env``, e.g. from ``gateway_env``) and pages on it, which
    must log no page errors; the gateway stops after."""
    gw = spawn("gateway", env, log_dir=LOGS)
    try:
        wait_ready(gw, timeout=60)
        pages = Pages(browser, gw.url)
        try:
            yield pages
        finally:
            pages.close()
        assert not pages.errors, pages.errors
    finally:
        gw.stop()


@pytest.fixture()
def pages(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Pages]:
    p = Pages(browser, stack.url)
    try:
        yield p
    finally:
        if request.node.stash.get(FAILED, False):
            p.snapshot(f"FAILED-{request.node.name}")
        p.close()
    assert not p.errors, p.errors


# A small accessibility audit run on every screen: form controls have labels, images have an
# alt text (empty for decoration), buttons and links have a name, one h1, ids are unique.
A11Y_AUDIT = """() => {
  const problems = [];
  const name = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim();
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    if (!el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      problems.push(`unlabelled ${el.tagName.toLowerCase()} ${el.name || el.id}`);
  }
  for (const el of document.querySelectorAll('img')) {
    if (!el.hasAttribute('alt')) problems.push(`img without alt ${el.className}`);
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!name(el)) problems.push(`nameless ${el.outerHTML.slice(0, 60)}`);
  }
  const h1 = document.querySelectorAll('main h1').length;
  if (h1 !== 1) problems.push(`${h1} h1 elements`);
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length) problems.push(`duplicate ids ${dup}`);
  return problems;
}"""


def screenshot(page: Any, name: str) -> None:
    """Every screen at desktop and phone size (full page), for a person to look at."""
    text = page.locator("body").inner_text()
    leaked = re.findall(r"\b(?:null|undefined|NaN|\[object Object\])\b", text)
    assert not leaked, f"{name}: the page shows {leaked}"
    problems = page.evaluate(A11Y_AUDIT)
    assert not problems, f"{name}: {problems}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)  # let the layout settle after the resize (not an assertion)
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    # Responsive: nothing wider than a phone's screen (no sideways scrolling).
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide on a phone"
    page.set_viewport_size(DESKTOP)


# ----------------------------------------------------------------------------- real images
def _split_rows(folder: str) -> list[dict[str, str]]:
    root = default_data_dir() / folder
    if not (root / "labels.csv").exists() or not (root / "splits.csv").exists():
        return []
    with (root / "splits.csv").open() as fh:
        split = {r["path"]: r["split"] for r in csv.DictReader(fh)}
    with (root / "labels.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if split.get(r["path"]) == "test"]


def real_chest_xray() -> Path | None:
    """A test-split NIH chest X-ray labelled pneumonia."""
    for row in _split_rows("nih-cxr14"):
        if row["label"] == "pneumonia":
            path = default_data_dir() / "nih-cxr14" / row["path"]
            if path.exists():
                return path
    return None


def real_mammo_exam() -> list[tuple[Path, str]]:
    """Both MLO views (left and right) of one test-split mini-mias woman with a lesion."""
    rows = _split_rows("mini-mias")
    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_patient.setdefault(row["patient_id"], []).append(row)
    for views in by_patient.values():
        sides = {r["laterality"] for r in views}
        if sides == {"L", "R"} and any(r["label"] == "malignant" for r in views):
            out = []
            for r in sorted(views, key=lambda r: r["laterality"]):
                path = default_data_dir() / "mini-mias" / r["path"]
                if not path.exists():
                    return []
                out.append((path, f"{r['laterality']}-{r['view']}"))
            return out
    return []


def photograph(tmp: Path) -> Path:
    """A real photograph (scikit-image's bundled 'coffee' picture) as a JPEG."""
    from PIL import Image
    from skimage import data

    path = tmp / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path, quality=90)
    return path


def copy_as(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def verify_pending_doctors(stack: Stack) -> None:
    """An admin (made by the CLI) verifies every pending doctor, as the admin screen would:
    patients see, and share studies with, verified doctors only."""
    from tests.gateway.conftest import Api, admin_api

    admin = admin_api(Api(stack.url), stack.database_url)
    pending = admin.get("/v1/admin/doctors", params={"status": "pending", "limit": 100})
    assert pending.status_code == 200, pending.text
    for doctor in pending.json()["items"]:
        r = admin.post(f"/v1/admin/doctors/{doctor['id']}/verify", json={})
        assert r.status_code == 200, r.text
