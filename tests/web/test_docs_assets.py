"""The docs assets committed in gateway/web/vendor are the packages pinned in package.json, as
shipped (plus scripts/vendor_docs.py's one documented patch), and the pages load them."""

from __future__ import annotations

import json

import pytest

from scripts.vendor_docs import ASSETS, NODE_MODULES, VENDOR, VERSIONS, installed_version, patched
from tests.procs import REPO


def test_vendored_versions_are_the_pins() -> None:
    pins = json.loads((REPO / "package.json").read_text())["devDependencies"]
    assert json.loads(VERSIONS.read_text()) == {p: pins[p] for p in ASSETS}


def test_vendored_files_are_the_packages_files() -> None:
    for package in ASSETS:
        if (
            not (NODE_MODULES / package).exists()
            or installed_version(package) != json.loads(VERSIONS.read_text())[package]
        ):
            pytest.skip("node_modules is not installed at the pinned versions (npm ci)")
    for package, files in ASSETS.items():
        for name in files:
            base = name.rsplit("/", 1)[-1]
            shipped = patched(base, (NODE_MODULES / package / name).read_bytes())
            assert (VENDOR / package / base).read_bytes() == shipped, f"{package}/{name}"


def test_the_pages_load_the_vendored_files() -> None:
    pages = (REPO / "gateway" / "web" / "docs").glob("*.html")
    referenced = " ".join(p.read_text() for p in pages)
    assert "/web/vendor/swagger-ui-dist/swagger-ui-bundle.js" in referenced
    assert "/web/vendor/redoc/redoc.standalone.js" in referenced
    assert "//cdn" not in referenced and "unpkg" not in referenced
