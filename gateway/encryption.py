"""Encryption at rest of the image store: AES-256-GCM (``cryptography``) around either backend.

Every blob is sealed with the current key: ``IRMIENC1 | len(key id) | key id | nonce(12) |
ciphertext+tag``, the header and the blob's key (the SHA-256 of the plaintext) as associated
data, so a blob cannot be swapped for another one or have its key id altered. The key id
stored with each blob is what lets keys rotate: old keys stay in the keyring for reading,
new writes use the current one (``python -m gateway.rekey`` re-seals old blobs; see
gateway/README.md). Blobs written before encryption existed (no header) are still read, and
only when their bytes match their key.

Keys come from settings (``IRMI_GATEWAY_STORE_KEYS`` = JSON ``{"<id>": "<base64 of 32
bytes>"}``, ``IRMI_GATEWAY_STORE_KEY_ID`` = the current id). In dev mode, without keys, one
is generated into ``store-keys.json`` beside the store folder; outside dev mode a missing key
stops the gateway at start-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.settings import MISSING_STORE_KEY
from gateway.store import ImageStore, blob_key

log = logging.getLogger("irmi.gateway.encryption")

MAGIC = b"IRMIENC1"
NONCE = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SealError(RuntimeError):
    """A blob that cannot be opened: unknown key id, or tampered with."""


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"store key id {self.current!r} is not among the store keys")
        for kid, key in self.keys.items():
            if not _KEY_ID.match(kid):
                raise ValueError(f"store key id {kid!r}: use 1-64 of A-Z a-z 0-9 . _ -")
            if len(key) != 32:
                raise ValueError(f"store key {kid!r} must be 32 bytes (base64 of 32 bytes)")

    def seal(self, key: str, data: bytes) -> bytes:
        kid = self.current.encode()
        header = MAGIC + bytes([len(kid)]) + kid
        nonce = secrets.token_bytes(NONCE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, data, header + key.encode())
        return header + nonce + sealed

    def open(self, key: str, blob: bytes) -> bytes:
        if not blob.startswith(MAGIC):
            if blob_key(blob) != key:
                raise SealError("an unsealed blob does not match its key")
            return blob  # written before the store was encrypted
        n = blob[len(MAGIC)] if len(blob) > len(MAGIC) else 0
        start = len(MAGIC) + 1
        kid = blob[start : start + n].decode(errors="replace")
        secret = self.keys.get(kid)
        if secret is None:
            raise SealError(f"blob sealed with key id {kid!r}, which is not in the keyring")
        header, rest = blob[: start + n], blob[start + n :]
        try:
            return AESGCM(secret).decrypt(rest[:NONCE], rest[NONCE:], header + key.encode())
        except InvalidTag as exc:
            raise SealError("a sealed blob failed authentication") from exc

    @staticmethod
    def key_id_of(blob: bytes) -> str | None:
        if not blob.startswith(MAGIC) or len(blob) <= len(MAGIC):
            return None
        n = blob[len(MAGIC)]
        return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + n].decode(errors="replace")


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _decode(kid: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"store key {kid!r} is not valid base64") from exc


def _dev_keyfile(path: Path) -> dict[str, Any]:
    """Read the dev-mode key file, creating it (atomically, never overwriting) if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        kid = "dev-1"
        body = json.dumps({"current": kid, "keys": {kid: new_key()}})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-keys-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(body)
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)  # fails if a peer replica created it first: use theirs
                log.warning(
                    "generated an image-store key (dev mode only)", extra={"path": str(path)}
                )
            except FileExistsError:
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def keyring_from_settings(settings: Any) -> Keyring:
    keys = {kid: _decode(kid, v.get_secret_value()) for kid, v in settings.store_keys.items()}
    current = settings.store_key_id or None  # compose passes an empty value when unset
    if not keys:
        if not settings.dev_mode:
            raise ValueError(MISSING_STORE_KEY)
        path = settings.store_key_file or Path(settings.store_dir).parent / "store-keys.json"
        data = _dev_keyfile(Path(path))
        keys = {kid: _decode(kid, v) for kid, v in data["keys"].items()}
        current = current or data["current"]
    if current is None:
        if len(keys) != 1:
            raise ValueError("IRMI_GATEWAY_STORE_KEY_ID must name the current store key")
        current = next(iter(keys))
    return Keyring(current, keys)


class EncryptedStore:
    """An :class:`~gateway.store.ImageStore` whose backend only ever holds ciphertext."""

    def __init__(self, backend: Any, keyring: Keyring) -> None:
        self.backend = backend
        self.keyring = keyring
        self.name = f"{backend.name}+aes-gcm"

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await self.backend.write(key, self.keyring.seal(key, data))
        return key

    async def write(self, key: str, data: bytes, replace: bool = False) -> None:
        if blob_key(data) != key:
            raise ValueError("a blob's key is the SHA-256 of its bytes")
        await self.backend.write(key, self.keyring.seal(key, data), replace)

    async def get(self, key: str) -> bytes:
        return self.keyring.open(key, await self.backend.get(key))

    async def reseal(self, key: str) -> bool:
        """Re-seal one blob with the current key; True when it was rewritten."""
        blob = await self.backend.get(key)
        if Keyring.key_id_of(blob) == self.keyring.current:
            return False
        data = self.keyring.open(key, blob)
        await self.backend.write(key, self.keyring.seal(key, data), replace=True)
        return True

    async def delete(self, key: str) -> None:
        await self.backend.delete(key)

    async def exists(self, key: str) -> bool:
        return bool(await self.backend.exists(key))

    async def ping(self) -> bool:
        return bool(await self.backend.ping())

    async def close(self) -> None:
        await self.backend.close()


def encrypted(backend: ImageStore, settings: Any) -> EncryptedStore:
    return EncryptedStore(backend, keyring_from_settings(settings))
