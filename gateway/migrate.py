"""``python -m gateway.migrate``: bring the database to the latest schema and exit."""

from __future__ import annotations

import asyncio

from gateway.db import create_engine, migrate
from gateway.settings import Settings


async def _main() -> None:
    settings = Settings(dev_mode=True)
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def main() -> None:
    asyncio.run(_main())
    print("database schema up to date")


if __name__ == "__main__":
    main()
