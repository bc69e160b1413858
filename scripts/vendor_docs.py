"""``python scripts/vendor_docs.py``: copy the API docs' browser assets, pinned in package.json,
from node_modules into gateway/web/vendor (committed: the gateway serves them itself, so /docs
and /redoc work offline and nothing is fetched from a CDN). ``make docs-assets`` runs it after
``npm ci``; tests/web/test_docs_assets.py checks that the copies match the pins."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
VENDOR = REPO / "gateway" / "web" / "vendor"
VERSIONS = VENDOR / "VERSIONS.json"

# package -> the files of it that the docs pages load (and its licence), as shipped.
ASSETS: dict[str, tuple[str, ...]] = {
    "swagger-ui-dist": ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"),
    "redoc": ("bundles/redoc.standalone.js", "bundles/redoc.standalone.js.LICENSE.txt", "LICENSE"),
}


# The one change made to a vendored file: ReDoc's sidebar credit ("API docs by Redocly") shows a
# logo from Redocly's CDN, the bundle's only remote load. Offline (and under the page's CSP,
# img-src 'self') it is the gateway's own icon instead.
PATCHES: dict[str, list[tuple[str, str]]] = {
    "redoc.standalone.js": [
        ('src:"https://cdn.redoc.ly/redoc/logo-mini.svg"', 'src:"/web/icon.svg"')
    ],
}


def patched(name: str, data: bytes) -> bytes:
    """``data`` of the vendored file ``name`` with its :data:`PATCHES` applied (each exactly
    once: a new release that moved the text fails here, not silently in the browser)."""
    for old, new in PATCHES.get(name, []):
        count = data.count(old.encode())
        if count != 1:
            raise RuntimeError(f"{name}: {old!r} found {count} times; review PATCHES")
        data = data.replace(old.encode(), new.encode())
    return data


def installed_version(package: str) -> str:
    meta = json.loads((NODE_MODULES / package / "package.json").read_text())
    return str(meta["version"])


def main() -> int:
    pins = json.loads((REPO / "package.json").read_text())["devDependencies"]
    versions: dict[str, str] = {}
    for package, files in ASSETS.items():
        version = installed_version(package)
        if version != pins[package]:
            print(f"{package} {version} installed, {pins[package]} pinned: run npm ci")
            return 1
        target = VENDOR / package
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in files:
            base = Path(name).name
            (target / base).write_bytes(patched(base, (NODE_MODULES / package / name).read_bytes()))
        versions[package] = version
    VERSIONS.write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    print(f"vendored {versions} into {VENDOR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
