"""Sending one DICOM object to the configured destination: C-STORE (pynetdicom SCU) or
STOW-RS (httpx). Blocking: the caller runs it in a thread. Any failure raises
:class:`SendFailed` with a short reason for the export record (never the object's content).
"""

from __future__ import annotations

import io
import secrets

import httpx

from gateway.dicom_settings import DicomSettings

#: C-STORE statuses that mean "stored": success and the warnings (coercion, elements dropped).
STORED = {0x0000, 0xB000, 0xB007, 0xB006}


class SendFailed(Exception):
    pass


def destination(settings: DicomSettings) -> str:
    """Where results go, in words (stored with each export)."""
    if settings.dicom_dest == "dimse":
        return (
            f"dimse://{settings.dicom_dest_ae_title}@"
            f"{settings.dicom_dest_host}:{settings.dicom_dest_port}"
        )
    if settings.dicom_dest == "stow":
        return f"stow:{settings.dicom_dest_url}"
    return "none"


def send(settings: DicomSettings, data: bytes) -> None:
    if settings.dicom_dest == "dimse":
        c_store(settings, data)
    elif settings.dicom_dest == "stow":
        stow(settings, data)
    else:
        raise SendFailed("no destination configured (dicom_dest=none)")


def c_store(settings: DicomSettings, data: bytes) -> None:
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=settings.dicom_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.dicom_timeout_s
    ae.connection_timeout = settings.dicom_timeout_s
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(
        settings.dicom_dest_host, settings.dicom_dest_port, ae_title=settings.dicom_dest_ae_title
    )
    if not assoc.is_established:
        why = "rejected by" if assoc.is_rejected else "not established with"
        raise SendFailed(f"association {why} {destination(settings)} (refused, down or no answer)")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise SendFailed("no C-STORE response (connection lost or timed out)")
    if int(code) not in STORED:
        raise SendFailed(f"C-STORE refused with status 0x{int(code):04X}")


def stow(settings: DicomSettings, data: bytes) -> None:
    if not settings.dicom_dest_url:
        raise SendFailed("dicom_dest=stow needs dicom_dest_url")
    boundary = secrets.token_hex(16)
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    auth = None
    if settings.dicom_dest_username:
        auth = httpx.BasicAuth(settings.dicom_dest_username, settings.dicom_dest_password or "")
    try:
        resp = httpx.post(
            settings.dicom_dest_url.rstrip("/") + "/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
            auth=auth,
            timeout=settings.dicom_timeout_s,
        )
    except httpx.HTTPError as exc:
        raise SendFailed(f"STOW-RS: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise SendFailed(f"STOW-RS answered {resp.status_code}")
    if "00081198" in resp.text and '"00081199"' not in resp.text:
        raise SendFailed("STOW-RS refused the instance (FailedSOPSequence)")
