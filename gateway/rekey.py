"""``python -m gateway.rekey``: re-seal every stored blob with the current image-store key
(after a key rotation), so that the old key can then be dropped from the keyring. Blobs
already sealed with the current key are left alone; it can be stopped and run again."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from gateway.db import create_engine, session_factory
from gateway.encryption import EncryptedStore, keyring_from_settings
from gateway.models import StudyFile
from gateway.settings import Settings
from gateway.store import create_backend


async def rekey(settings: Settings) -> tuple[int, int]:
    """(blobs re-sealed, blobs seen)."""
    engine = create_engine(settings.database_url)
    store = EncryptedStore(create_backend(settings), keyring_from_settings(settings))
    done = seen = 0
    try:
        async with session_factory(engine)() as session:
            keys = (await session.execute(select(StudyFile.blob_key).distinct())).scalars()
            for key in list(keys):
                seen += 1
                done += int(await store.reseal(key))
    finally:
        await store.close()
        await engine.dispose()
    return done, seen


def main() -> None:
    done, seen = asyncio.run(rekey(Settings()))
    print(f"re-sealed {done} of {seen} blobs with the current key")


if __name__ == "__main__":
    main()
