"""A throwaway Orthanc (Debian's /usr/sbin/Orthanc with the DICOMweb plugin) on free loopback
ports, configured as the clinic's PACS would be to talk to IRMI: IRMI's DICOM node as a
DICOM modality, IRMI's gateway as a DICOMweb server (STOW-RS with the integration key)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.procs import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET = "ORTHANC"


def available() -> bool:
    return ORTHANC.exists() and DICOMWEB_PLUGIN.exists()


def config(
    tmp: Path, http_port: int, dicom_port: int, node: tuple[str, int], gateway_url: str, key: str
) -> dict[str, Any]:
    """The Orthanc configuration the tests use (the README's example)."""
    return {
        "Name": "IRMI test PACS",
        "StorageDirectory": str(tmp / "storage"),
        "IndexDirectory": str(tmp / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,  # IRMI's results come back by C-STORE
        "DicomCheckCalledAet": False,
        "DicomScuTimeout": 30,
        "StableAge": 3600,
        "SaveJobs": False,
        "JobsHistorySize": 1000,  # the tests follow every store job to its end
        "ConcurrentJobs": 2,
        "HttpTimeout": 60,
        # Orthanc 1.10's HTTP server closes an idle keep-alive connection after about a second,
        # so a request sent just then on a pooled connection meets a closed socket ("Server
        # disconnected without sending a response"). A connection per request on loopback.
        "KeepAlive": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        # IRMI's DICOM node (C-STORE) ...
        "DicomModalities": {"irmi": {"AET": node[0], "Host": "127.0.0.1", "Port": node[1]}},
        # ... and IRMI's gateway (STOW-RS), both authenticated as the integration account.
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {
                "irmi": {"Url": f"{gateway_url}/v1/dicomweb/", "HttpHeaders": {"X-API-Key": key}}
            },
        },
    }


@dataclass
class Orthanc:
    proc: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    tmp: Path,
    node: tuple[str, int],
    gateway_url: str,
    key: str,
    dicom_port: int | None = None,
    http_port: int | None = None,
) -> Orthanc:
    """Start Orthanc (again, on the same storage, when ``tmp`` was used before)."""
    tmp.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = http_port or free_port(), dicom_port or free_port()
    path = tmp / "orthanc.json"
    path.write_text(json.dumps(config(tmp, http_port, dicom_port, node, gateway_url, key)))
    log_path = tmp / "orthanc.log"
    proc = subprocess.Popen(
        [str(ORTHANC), f"--logfile={log_path}", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pacs = Orthanc(proc, http_port, dicom_port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(pacs.url + "/system", timeout=2).status_code == 200:
                return pacs
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pacs.stop()
    raise TimeoutError("Orthanc did not start")
