"""``python scripts/client_tools.py``: install the client-generation tools, each pinned in its
own environment, only when missing or when their pins changed.

- ``.tools/clientgen/``: a virtual environment with ``openapi-python-client`` and its
  dependencies, hash-pinned by ``tests/clients/clientgen-requirements.txt`` (installed with the
  repository's pinned uv; never the project's ``.venv``).
- ``node_modules/``: ``npm ci`` from ``package.json`` / ``package-lock.json`` (openapi-typescript,
  typescript, and the docs assets that ``scripts/vendor_docs.py`` copies into the gateway).

A stamp beside each records the sha256 of the pin file it was installed from, so a second run
downloads nothing. ``make test`` runs this; so does the client test's fixture.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "tests" / "clients" / "clientgen-requirements.txt"
CLIENTGEN = REPO / ".tools" / "clientgen"
UV = REPO / ".tools" / "bin" / "uv"
LOCK = REPO / "package-lock.json"
NODE_MODULES = REPO / "node_modules"
_STAMP = ".irmi-installed"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _current(folder: Path, pins: Path) -> bool:
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest(pins)


def clientgen_python() -> Path:
    """The Python of the openapi-python-client environment (installed if needed)."""
    python = CLIENTGEN / "bin" / "python"
    if _current(CLIENTGEN, REQUIREMENTS) and python.exists():
        return python
    if not UV.exists():
        raise RuntimeError(f"{UV} is missing: run `make venv-test` first")
    shutil.rmtree(CLIENTGEN, ignore_errors=True)
    subprocess.run(  # noqa: S603 - the repository's pinned uv
        [str(UV), "venv", "--quiet", "--python", sys.executable, str(CLIENTGEN)], check=True
    )
    subprocess.run(  # noqa: S603 - the repository's pinned uv, hash-pinned requirements
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--require-hashes",
            "--no-deps",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(CLIENTGEN)},
    )
    (CLIENTGEN / _STAMP).write_text(_digest(REQUIREMENTS) + "\n")
    return python


def node_bin(name: str) -> Path:
    """An executable of ``node_modules/.bin`` (``npm ci`` first if needed)."""
    if not _current(NODE_MODULES, LOCK):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (node and npm are needed for this check)")
        subprocess.run(  # noqa: S603 - npm ci from the committed lock file
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REPO,
            check=True,
        )
        (NODE_MODULES / _STAMP).write_text(_digest(LOCK) + "\n")
    return NODE_MODULES / ".bin" / name


def main() -> int:
    print(f"openapi-python-client: {clientgen_python()}")
    print(f"openapi-typescript: {node_bin('openapi-typescript')}")
    print(f"tsc: {node_bin('tsc')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
