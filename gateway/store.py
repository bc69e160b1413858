"""Content-addressed image store: the key of a blob is the SHA-256 of its bytes.

Two backends behind one small interface: :class:`LocalDiskStore` (the default; files written
to a temporary name, fsynced, then renamed, so a reader never sees half a file) and
:class:`S3Store` (any S3-compatible object storage; a PUT is atomic). Blobs are never served
directly: the routes check authorization, then read them through this interface. The
gateway wraps the backend in :class:`gateway.encryption.EncryptedStore`, so that what either
backend holds is ciphertext; the key of a blob stays the SHA-256 of its plaintext.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

from shared.errors import NotFound, ServiceUnavailable

log = logging.getLogger("irmi.gateway.store")

_KEY = re.compile(r"^[0-9a-f]{64}$")


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError("not a sha256 blob key")
    return key


class ImageStore(Protocol):
    name: str

    async def put(self, data: bytes) -> str:
        """Store the bytes (idempotent) and return their key."""
        ...

    async def write(self, key: str, data: bytes, replace: bool = False) -> None:
        """Store ``data`` under a key computed by the caller (the encryption layer's)."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes of a blob; :class:`NotFound` when absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove a blob; absent blobs are fine."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class LocalDiskStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def _put(self, data: bytes, key: str, replace: bool = False) -> None:
        path = self._path(key)
        if path.exists() and not replace:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await asyncio.to_thread(self._put, data, key)
        return key

    async def write(self, key: str, data: bytes, replace: bool = False) -> None:
        """Store ``data`` under ``key`` (kept if present unless ``replace``)."""
        await asyncio.to_thread(self._put, data, key, replace)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise NotFound("The file is no longer stored.") from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)

    async def ping(self) -> bool:
        return await asyncio.to_thread(os.access, self.root, os.W_OK)

    async def close(self) -> None:
        return None


class S3Store:
    """S3-compatible object storage through boto3 (its blocking calls run in threads)."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "images/",
        create_bucket: bool = True,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )
        self._create_bucket = create_bucket
        self._bucket_ready = False

    def _object(self, key: str) -> str:
        return f"{self.prefix}{_check_key(key)}"

    def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._create_bucket:
            return
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
        self._bucket_ready = True

    def _put(self, data: bytes, key: str) -> None:
        self._ensure_bucket()
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._object(key),
            Body=data,
            ContentType="application/octet-stream",
        )

    def _get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                raise NotFound("The file is no longer stored.") from exc
            raise
        return bytes(obj["Body"].read())

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
            return True
        except ClientError:
            return False

    def _ping(self) -> bool:
        try:
            self._ensure_bucket()
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except Exception:
            return False

    async def _call(self, fn: Any, *args: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, *args)
        except (BotoCoreError, ClientError) as exc:
            code = ""
            if isinstance(exc, ClientError):
                code = str(exc.response.get("Error", {}).get("Code", ""))
            log.warning("object store error", extra={"error": type(exc).__name__, "code": code})
            raise ServiceUnavailable(
                "The image store is unavailable; retry shortly.", details={"store": "s3"}
            ) from exc

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await self._call(self._put, data, key)
        return key

    async def write(self, key: str, data: bytes, replace: bool = False) -> None:
        """Store ``data`` under ``key`` (a PUT is atomic; it replaces any older object)."""
        await self._call(self._put, data, key)

    async def get(self, key: str) -> bytes:
        data: bytes = await self._call(self._get, key)
        return data

    async def delete(self, key: str) -> None:
        await self._call(self._delete, key)

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, key)

    async def ping(self) -> bool:
        return await asyncio.to_thread(self._ping)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


def create_store(settings: Any) -> ImageStore:
    """The configured backend, encrypted at rest (:mod:`gateway.encryption`)."""
    from gateway.encryption import encrypted

    return encrypted(create_backend(settings), settings)


def create_backend(settings: Any) -> ImageStore:
    if settings.store == "s3":
        return S3Store(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            prefix=settings.s3_prefix,
        )
    return LocalDiskStore(Path(settings.store_dir))
