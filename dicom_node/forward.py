"""Handing one received instance to the gateway (STOW-RS, one instance per request) and
turning the gateway's answer into the C-STORE status the sender gets.

Success (0x0000) only when the gateway lists the instance as stored: it is then in the
gateway's image store and database, and survives a restart of the node or the gateway. A
gateway that cannot be reached, is overloaded or fails answers 0xA700 (Out of Resources: the
sender keeps the instance and sends it again); a refused instance gets the gateway's failure
reason (0xC000 cannot understand, 0x0122 SOP class not supported, ...).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx

log = logging.getLogger("irmi.dicom_node")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
NOT_AUTHORIZED = 0x0124
CANNOT_UNDERSTAND = 0xC000
STOW_PATH = "/v1/dicomweb/studies"


def _failure_reason(body: Any) -> int:
    """The first FailureReason of a Store Instances Response (202), or of the error envelope
    of a 409 (its details carry the same FailedSOPSequence)."""
    try:
        if "error" in body:
            body = body["error"]["details"]
        failed = body["00081198"]["Value"][0]
        return int(failed["00081197"]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return PROCESSING_FAILURE


def status_of(resp: httpx.Response) -> int:
    """The C-STORE status for the gateway's answer to one instance."""
    if resp.status_code == 200:
        return SUCCESS
    if resp.status_code in (202, 409):
        try:
            return _failure_reason(resp.json())
        except ValueError:
            return PROCESSING_FAILURE
    if resp.status_code in (401, 403):
        return NOT_AUTHORIZED
    if resp.status_code in (400, 415, 422):
        return CANNOT_UNDERSTAND
    return OUT_OF_RESOURCES  # 413, 429, 5xx: keep it and send it again later


class Forwarder:
    """One pooled HTTP client to the gateway, shared by the association threads."""

    def __init__(self, gateway_url: str, api_key: str, timeout_s: float) -> None:
        self.client = httpx.Client(
            base_url=gateway_url.rstrip("/"),
            headers={"X-API-Key": api_key},
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )

    def store(self, data: bytes, calling_ae: str) -> int:
        boundary = secrets.token_hex(16)
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
            "X-DICOM-Calling-AE": calling_ae[:64],
        }
        try:
            resp = self.client.post(STOW_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("gateway unreachable: %s", type(exc).__name__)
            return OUT_OF_RESOURCES
        status = status_of(resp)
        if status != SUCCESS:
            log.warning(
                "instance not stored", extra={"http_status": resp.status_code, "dimse": status}
            )
        return status

    def gateway_ready(self) -> bool:
        """The gateway is up and accepts the node's key (the integration account's)."""
        try:
            resp = self.client.get("/v1/studies", params={"limit": 1}, timeout=3.0)
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.client.close()
