"""``python -m gateway.openapi_export [path]``: write the gateway's OpenAPI document
(default: ``openapi.json`` at the repository root; the iOS client is generated from it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.settings import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "openapi.json"


def build() -> dict[str, Any]:
    from gateway.app import create_app
    from gateway.settings import Settings

    # A fixed, throwaway configuration: the document must not depend on the environment.
    settings = Settings(
        dev_mode=True,
        jwt_secret="openapi-export",  # noqa: S106
        database_url="sqlite+aiosqlite://",
    )
    doc: dict[str, Any] = create_app(settings).openapi()
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
