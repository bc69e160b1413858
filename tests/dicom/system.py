"""The whole chain on loopback, every piece real: tb_service, bc_service, the gateway (with the
DICOM intake, worker and result export), the DICOM node, and an Orthanc PACS that forwards to
IRMI and receives IRMI's results. IRMI (gateway + node) can be killed and restarted in place,
on the same database and image store."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.dicom import orthanc
from tests.gateway.conftest import Api, admin_api, doctor_login, gateway_env, signup_login
from tests.procs import Service, free_port, run_module, spawn, wait_ready
from tests.stress.system import bc_env, tb_env

NODE_AET = "IRMI"
QUIET_S = 3.0


class DicomSystem:
    def __init__(self, tmp: Path, quiet_s: float = QUIET_S) -> None:
        self.tmp = tmp
        self.quiet_s = quiet_s
        self.database_url = f"sqlite+aiosqlite:///{tmp / 'gw.db'}"
        self.account = f"pacs-{uuid.uuid4().hex[:8]}@clinic.example.org"
        self.doctor_email = f"radiologist-{uuid.uuid4().hex[:8]}@clinic.example.org"
        self.other_doctor_email = f"other-{uuid.uuid4().hex[:8]}@clinic.example.org"
        self.secret = "dicom-secret-" + uuid.uuid4().hex
        self.gw_port, self.node_port, self.node_dicom_port = free_port(), free_port(), free_port()
        self.pacs_dicom_port = free_port()
        self.key = self._integration_key()
        self.tb = spawn(
            "tb_service", tb_env(tmp / "tb-models", IRMI_TB_LOG_LEVEL="WARNING"), log_dir=tmp
        )
        self.bc = spawn("bc_service", bc_env(IRMI_BC_LOG_LEVEL="WARNING"), log_dir=tmp)
        wait_ready(self.tb, 240)
        wait_ready(self.bc, 240)
        self.gw = self.start_gateway()
        self.node = self.start_node()
        self.pacs = orthanc.start(
            tmp / "orthanc",
            (NODE_AET, self.node_dicom_port),
            self.gw.url,
            self.key,
            dicom_port=self.pacs_dicom_port,
        )
        anon = Api(self.gw.url)
        self.admin = admin_api(anon, self.database_url)
        self.doctor = anon.as_token(
            doctor_login(anon, self.doctor_email, "LIC-1", verified_in=self.database_url)[
                "access_token"
            ]
        )
        # Named in dicom_share_with too, but never verified: reads nothing.
        self.unverified = anon.as_token(
            doctor_login(anon, self.other_doctor_email, "LIC-2")["access_token"]
        )
        self.patient = anon.as_token(
            signup_login(anon, f"patient-{uuid.uuid4().hex[:8]}@example.org")["access_token"]
        )

    def _integration_key(self) -> str:
        out = run_module(
            ["gateway.admin", "create-integration", "--email", self.account, "--name", "Test PACS"],
            {"IRMI_DEV_MODE": "1", "IRMI_GATEWAY_DATABASE_URL": self.database_url},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().rsplit(" ", 1)[-1]

    def start_gateway(self) -> Service:
        env = gateway_env(
            self.tmp,
            self.database_url,
            f"http://127.0.0.1:{self.tb.port}",
            f"http://127.0.0.1:{self.bc.port}",
            IRMI_GATEWAY_JWT_SECRET=self.secret,
            IRMI_GATEWAY_LOG_LEVEL="WARNING",
            IRMI_GATEWAY_DICOM_ACCOUNT=self.account,
            IRMI_GATEWAY_DICOM_SHARE_WITH=f'["{self.doctor_email}", "{self.other_doctor_email}"]',
            IRMI_GATEWAY_DICOM_QUIET_S=str(self.quiet_s),
            IRMI_GATEWAY_DICOM_POLL_S="0.3",
            IRMI_GATEWAY_DICOM_LEASE_S="20",
            IRMI_GATEWAY_DICOM_DEST="dimse",
            IRMI_GATEWAY_DICOM_DEST_HOST="127.0.0.1",
            IRMI_GATEWAY_DICOM_DEST_PORT=str(self.pacs_dicom_port),
            IRMI_GATEWAY_DICOM_DEST_AE_TITLE=orthanc.AET,
            IRMI_GATEWAY_DICOM_EXPORT_BACKOFF_S="0.5",
            IRMI_GATEWAY_DICOM_EXPORT_BACKOFF_MAX_S="3",
            IRMI_GATEWAY_DICOM_EXPORT_ATTEMPTS="30",
            IRMI_GATEWAY_DICOM_TIMEOUT_S="15",
            IRMI_GATEWAY_EXAM_RETRY_WINDOW_S="60",
        )
        svc = spawn("gateway", env, port=self.gw_port, log_dir=self.tmp)
        wait_ready(svc, 120)
        return svc

    def start_node(self) -> Service:
        env = {
            "IRMI_DICOM_GATEWAY_URL": f"http://127.0.0.1:{self.gw_port}",
            "IRMI_DICOM_API_KEY": self.key,
            "IRMI_DICOM_DICOM_HOST": "127.0.0.1",
            "IRMI_DICOM_DICOM_PORT": str(self.node_dicom_port),
            "IRMI_DICOM_AE_TITLE": NODE_AET,
            "IRMI_DICOM_ALLOWED_AE_TITLES": f'["{orthanc.AET}"]',
            "IRMI_DICOM_ALLOWED_HOSTS": '["127.0.0.1"]',
            "IRMI_DICOM_LOG_LEVEL": "WARNING",
        }
        svc = spawn("dicom_node", env, port=self.node_port, log_dir=self.tmp)
        wait_ready(svc, 60)
        return svc

    def kill_irmi(self) -> None:
        """SIGKILL the gateway and the node: nothing gets to finish or flush."""
        for svc in (self.node, self.gw):
            svc.proc.kill()
            svc.proc.wait()

    def start_irmi(self) -> None:
        self.gw = self.start_gateway()
        self.node = self.start_node()

    def start_pacs(self) -> None:
        """Orthanc again, same storage and ports (after ``self.pacs.stop()``)."""
        self.pacs = orthanc.start(
            self.tmp / "orthanc",
            (NODE_AET, self.node_dicom_port),
            self.gw.url,
            self.key,
            dicom_port=self.pacs_dicom_port,
            http_port=self.pacs.http_port,
        )

    def stop(self) -> None:
        self.pacs.stop()
        for svc in (self.node, self.gw, self.bc, self.tb):
            svc.stop()

    # ------------------------------------------------------------------ the PACS side
    def pacs_upload(self, client: httpx.Client, data: bytes) -> str:
        """Store a file in Orthanc (as the modality would); its Orthanc study id."""
        r = client.post("/instances", content=data, headers={"Content-Type": "application/dicom"})
        assert r.status_code == 200, r.text
        return str(r.json()["ParentStudy"])

    def upload_study(self, client: httpx.Client, files: list[bytes]) -> str:
        """Store every file of one study in Orthanc; the study's Orthanc id."""
        studies = {self.pacs_upload(client, f) for f in files}
        assert len(studies) == 1, studies
        return studies.pop()

    def forward_job(self, client: httpx.Client, study: str) -> str:
        """Orthanc sends the study to IRMI's node (an asynchronous C-STORE job): its id."""
        r = client.post("/modalities/irmi/store", json={"Resources": [study], "Asynchronous": True})
        assert r.status_code == 200, r.text
        return str(r.json()["ID"])

    def job_state(self, client: httpx.Client, job: str) -> str:
        r = client.get(f"/jobs/{job}")
        assert r.status_code == 200, (job, r.status_code, r.text)
        return str(r.json()["State"])

    def series_modalities(self, client: httpx.Client, study: str) -> list[str]:
        series = client.get(f"/studies/{study}/series").json()
        return sorted(str(s["MainDicomTags"].get("Modality", "")) for s in series)

    def results_in_pacs(self, client: httpx.Client, study: str) -> dict[str, list[str]]:
        """The Orthanc instance ids of IRMI's SR and SC in this study."""
        out: dict[str, list[str]] = {"SR": [], "SC": []}
        for s in client.get(f"/studies/{study}/series").json():
            if s["MainDicomTags"].get("Manufacturer") == "IRMI" or s["MainDicomTags"].get(
                "SeriesNumber"
            ) in {"9901", "9902"}:
                kind = "SR" if s["MainDicomTags"].get("Modality") == "SR" else "SC"
                out[kind] += list(s["Instances"])
        return out

    def wait_results(
        self, client: httpx.Client, study: str, sc: int, limit_s: float = 180
    ) -> dict[str, list[str]]:
        deadline = time.monotonic() + limit_s
        found: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            found = self.results_in_pacs(client, study)
            if len(found["SR"]) >= 1 and len(found["SC"]) >= sc:
                return found
            time.sleep(0.5)
        raise AssertionError(f"no results for {study} in {limit_s}s: {found}")

    def received(self) -> list[dict[str, Any]]:
        r = self.admin.get("/v1/admin/dicom/studies", params={"limit": 500})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def exports(self) -> list[dict[str, Any]]:
        r = self.admin.get("/v1/admin/dicom/exports", params={"limit": 500})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def settled_exports(self, study_uids: set[str], limit_s: float = 60) -> list[dict[str, Any]]:
        """The send records of these studies once none is pending any more.

        The PACS holds an object a moment before the gateway commits that it was sent, and
        an attempt that timed out on a slow machine is retried after its backoff, so the
        record is read once it has settled rather than right after the PACS shows results.
        """
        deadline = time.monotonic() + limit_s
        while True:
            sent = [e for e in self.exports() if e["study_uid"] in study_uids]
            if all(e["status"] != "pending" for e in sent) or time.monotonic() > deadline:
                return sent
            time.sleep(0.5)
