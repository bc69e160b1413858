"""Patient data at rest and in transit: the image store holds ciphertext on both backends
(local disk, S3 on a real SeaweedFS), keys rotate, a missing key stops the gateway outside dev
mode; the inference services receive de-identified DICOM copies; uploaded JPEGs lose EXIF."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from gateway.deidentify import deidentify_dicom, strip_jpeg_metadata
from gateway.encryption import EncryptedStore, Keyring, SealError, keyring_from_settings
from gateway.settings import Settings
from gateway.store import LocalDiskStore
from tests.gateway.conftest import Api, run_gateway, signup_login, sqlite_gateway_env, store_backend
from tests.imagegen import dicom_bytes, gradient, png_bytes
from tests.procs import Service

NAME = "Doe^Jane"
DICOM_EXTRA = {
    "PatientName": NAME,
    "PatientID": "MRN-778899",
    "PatientBirthDate": "19610412",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.111",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.222",
    "ReferringPhysicianName": "Who^Doctor",
    "InstitutionName": "Saint Example Hospital",
}


def patient_dicom() -> bytes:
    return dicom_bytes(gradient(160, 128, np.uint16) * 64, extra=DICOM_EXTRA)


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    Image.fromarray(gradient(120, 100)).save(out, "JPEG", exif=exif.tobytes(), comment=b"Jane")
    return out.getvalue()


def _key(seed: int) -> bytes:
    return bytes([seed]) * 32


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with store_backend(request, tmp_path, "irmi-sealed") as s:
        yield s


async def test_store_holds_ciphertext_and_keys_rotate(backend: Any) -> None:
    data = patient_dicom()
    old = EncryptedStore(backend, Keyring("k1", {"k1": _key(1)}))
    key = await old.put(data)
    raw = await backend.get(key)
    assert raw != data and NAME.encode() not in raw and b"MRN-778899" not in raw
    assert Keyring.key_id_of(raw) == "k1"
    assert await old.get(key) == data
    # rotation: k2 current, k1 kept for reading; new writes use k2
    new = EncryptedStore(backend, Keyring("k2", {"k2": _key(2), "k1": _key(1)}))
    assert await new.get(key) == data
    other = await new.put(b"another blob" * 50)
    assert Keyring.key_id_of(await backend.get(other)) == "k2"
    assert await new.reseal(key) and not await new.reseal(key)
    assert Keyring.key_id_of(await backend.get(key)) == "k2"
    only_k1 = EncryptedStore(backend, Keyring("k1", {"k1": _key(1)}))
    with pytest.raises(SealError):
        await only_k1.get(key)  # sealed with k2 now
    # a tampered blob, or one moved under another key, is refused
    sealed = bytearray(await backend.get(key))
    sealed[-1] ^= 1
    await backend.write(key, bytes(sealed), replace=True)
    with pytest.raises(SealError):
        await new.get(key)
    await backend.write(other, await backend.get(other), replace=True)
    await backend.delete(key)
    await backend.write(key, await backend.get(other), replace=True)
    with pytest.raises(SealError):
        await new.get(key)


def test_missing_key_refuses_to_start_outside_dev_mode(tmp_path: Path) -> None:
    common: dict[str, Any] = {"jwt_secret": "x" * 40, "store_dir": tmp_path / "images"}
    with pytest.raises(ValueError, match="IRMI_GATEWAY_STORE_KEYS"):
        keyring_from_settings(Settings(dev_mode=False, **common))
    dev = keyring_from_settings(Settings(dev_mode=True, **common))
    assert (tmp_path / "store-keys.json").exists()
    assert keyring_from_settings(Settings(dev_mode=True, **common)) == dev  # kept, not redone
    b64 = base64.b64encode(_key(7)).decode()
    ring = keyring_from_settings(
        Settings(dev_mode=False, store_keys={"2026-12": b64}, **common)  # type: ignore[arg-type]
    )
    assert ring.current == "2026-12" and ring.keys["2026-12"] == _key(7)
    with pytest.raises(ValueError, match="STORE_KEY_ID"):
        keyring_from_settings(
            Settings(dev_mode=False, store_keys={"a": b64, "b": b64}, **common)  # type: ignore[arg-type]
        )


def test_deidentified_copies_keep_uids_and_pixels() -> None:
    data = patient_dicom()
    out = deidentify_dicom(data)
    ds, orig = pydicom.dcmread(io.BytesIO(out)), pydicom.dcmread(io.BytesIO(data))
    for text in (NAME, "MRN-778899", "19610412", "Who^Doctor", "Saint Example"):
        assert text.encode() not in out, text
    assert str(ds.PatientName) == "" and "PatientBirthDate" not in ds
    assert ds.PatientIdentityRemoved == "YES"
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds[uid].value == orig[uid].value
    assert np.array_equal(ds.pixel_array, orig.pixel_array)
    jpeg = gps_jpeg()
    clean = strip_jpeg_metadata(jpeg)
    assert b"Exif" not in clean and b"PhoneMaker" not in clean and b"Jane" not in clean
    assert not Image.open(io.BytesIO(clean)).getexif()
    decoded = (np.asarray(Image.open(io.BytesIO(b))) for b in (jpeg, clean))
    assert np.array_equal(next(decoded), next(decoded))  # not re-encoded


def _received(fake: Service) -> list[bytes]:
    return [base64.b64decode(b) for b in httpx.get(fake.url + "/_debug/received").json()]


def test_upload_is_stored_encrypted_and_forwarded_deidentified(
    fakes: dict[str, Service], tmp_path: Path
) -> None:
    fake = fakes["ok"]
    env = sqlite_gateway_env(tmp_path, fake.url)
    with run_gateway(env, tmp_path) as gw:
        anon = Api(gw.url)
        p = anon.as_token(signup_login(anon, "privacy@example.org")["access_token"])
        dicom = patient_dicom()
        r = p.post("/v1/studies/chest", files={"file": ("x.dcm", dicom, "application/dicom")})
        assert r.status_code == 201, r.text
        study = r.json()
        # the record keeps the identity: the image route gives back the file as uploaded
        assert p.get(study["images"][0]["url"]).content == dicom
        # tb_service got a de-identified copy with the same UIDs
        sent = _received(fake)[-1]
        assert NAME.encode() not in sent and b"MRN-778899" not in sent
        assert pydicom.dcmread(io.BytesIO(sent)).StudyInstanceUID == DICOM_EXTRA["StudyInstanceUID"]
        # a JPEG with EXIF GPS: stored, forwarded and served without it
        jpeg = gps_jpeg()
        r = p.post("/v1/studies/chest", files={"file": ("x.jpg", jpeg, "image/jpeg")})
        assert r.status_code == 201, r.text
        served = p.get(r.json()["images"][0]["url"]).content
        assert not Image.open(io.BytesIO(served)).getexif() and b"PhoneMaker" not in served
        assert b"PhoneMaker" not in _received(fake)[-1]
        # mammography: the views bc_service receives are de-identified too
        view = [("L-CC", ("a.dcm", dicom, "application/dicom"))]
        r = p.post("/v1/studies/mammography", files=view)
        assert r.status_code == 202, r.text
        assert NAME.encode() not in _received(fake)[-1]
        png = png_bytes(gradient(64, 64))
        r = p.post("/v1/predict/chest", files={"file": ("x.dcm", dicom, "application/dicom")})
        assert NAME.encode() not in _received(fake)[-1]
        r = p.post("/v1/studies/chest", files={"file": ("x.png", png, "image/png")})
        assert r.status_code == 201, r.text
    blobs = [f for f in (tmp_path / "images").rglob("*") if f.is_file()]
    assert len(blobs) >= 4
    for f in blobs:
        raw = f.read_bytes()
        assert raw not in {dicom, jpeg, png} and NAME.encode() not in raw
        assert raw.startswith(b"IRMIENC1")
    for line in gw.logs().splitlines():
        assert NAME not in line and "MRN-778899" not in line
        if line.startswith("{"):
            json.loads(line)


async def test_rekey_reseals_old_blobs_with_the_current_key(tmp_path: Path) -> None:
    from gateway.db import create_engine, migrate, session_factory
    from gateway.models import Study, StudyFile, User
    from gateway.rekey import rekey

    k1, k2 = (base64.b64encode(_key(i)).decode() for i in (1, 2))
    common: dict[str, Any] = {
        "jwt_secret": "x" * 40,
        "store_dir": tmp_path / "images",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
    }
    backend = LocalDiskStore(tmp_path / "images")
    old = EncryptedStore(backend, Keyring("k1", {"k1": _key(1)}))
    blobs = [patient_dicom(), b"second blob" * 10]
    keys = [await old.put(b) for b in blobs]
    engine = create_engine(common["database_url"])
    await migrate(engine)
    async with session_factory(engine)() as s:
        s.add(
            User(
                id="u" * 32, email="u@example.org", password_hash="-", role="patient", full_name="U"
            )
        )
        await s.flush()
        s.add(Study(id="s" * 32, owner_id="u" * 32, kind="chest", status="succeeded"))
        await s.flush()
        for i, key in enumerate(keys):
            s.add(
                StudyFile(
                    study_id="s" * 32,
                    role="original",
                    name=f"f{i}",
                    blob_key=key,
                    media_type="application/dicom",
                    size=1,
                )
            )
        await s.commit()
    await engine.dispose()
    rotated = Settings(dev_mode=False, store_keys={"k1": k1, "k2": k2}, store_key_id="k2", **common)  # type: ignore[arg-type]
    assert await rekey(rotated) == (2, 2)
    assert await rekey(rotated) == (0, 2)  # idempotent
    for key, data in zip(keys, blobs, strict=True):
        assert Keyring.key_id_of(await backend.get(key)) == "k2"
        assert await EncryptedStore(backend, Keyring("k2", {"k2": _key(2)})).get(key) == data
