"""IRMI as a DICOM node of a real Orthanc PACS: Orthanc forwards chest and mammography studies
(C-STORE to the DICOM node, STOW-RS to the gateway), IRMI analyses them with the real
tb_service and bc_service, and IRMI's SR and overlay Secondary Capture come back into Orthanc
in the same study. Received studies belong to the integration account and are read only by
the verified doctors they are shared with; refusals are recorded with their reason."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.dicom import films
from tests.dicom.system import DicomSystem

pytestmark = pytest.mark.realdata


def _wait_jobs(
    pacs: httpx.Client, chain: DicomSystem, jobs: list[str], limit_s: float = 120
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        states = [chain.job_state(pacs, j) for j in jobs]
        if all(s == "Success" for s in states):
            return
        assert "Failure" not in states, states
        time.sleep(0.3)
    raise AssertionError(f"jobs not done: {states}")


def _content_items(ds: Any) -> list[Any]:
    out = []
    for item in getattr(ds, "ContentSequence", []):
        out.append(item)
        out += _content_items(item)
    return out


def _sr(pacs: httpx.Client, instance: str) -> Any:
    return pydicom.dcmread(io.BytesIO(pacs.get(f"/instances/{instance}/file").content))


def _texts(sr: Any) -> list[str]:
    return [str(i.TextValue) for i in _content_items(sr) if i.ValueType == "TEXT"]


def _referenced(sr: Any) -> set[str]:
    return {
        str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for i in _content_items(sr)
        if i.ValueType == "IMAGE"
    }


def _received(
    chain: DicomSystem, study_uid: str, status: str, limit_s: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in chain.received() if r["study_uid"] == study_uid]
        if rows and rows[0]["status"] == status:
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"{study_uid} not {status}: {rows}")


def test_chest_and_mammography_round_trip(chain: DicomSystem) -> None:
    chest_uid, mammo_uid = generate_uid(), generate_uid()
    film = films.chest_films()[0]
    pa = films.chest_dicom(film, chest_uid, "CH1", view_position="PA", body_part=None)
    lateral = films.chest_dicom(film, chest_uid, "CH1", view_position="LL", instance_number=2)
    woman = films.mammo_women()[0]
    views = [
        films.mammo_dicom(p, tag, mammo_uid, "MG1", instance_number=i)
        for i, (p, tag) in enumerate(woman)
    ]
    raw = films.mammo_dicom(woman[0][0], woman[0][1], mammo_uid, "MG1", intent="FOR PROCESSING")
    with chain.pacs.client() as pacs:
        chest = chain.upload_study(pacs, [pa, lateral])
        mammo = chain.upload_study(pacs, [*views, raw])
        _wait_jobs(pacs, chain, [chain.forward_job(pacs, chest), chain.forward_job(pacs, mammo)])

        # Chest: one SR and one overlay SC, in the same study, for the frontal film only.
        got = chain.wait_results(pacs, chest, sc=1)
        assert len(got["SR"]) == 1 and len(got["SC"]) == 1
        sr = _sr(pacs, got["SR"][0])
        assert sr.StudyInstanceUID == chest_uid and sr.PatientID == "CH1"
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
        assert _referenced(sr) == {pydicom.dcmread(io.BytesIO(pa)).SOPInstanceUID}
        texts = " ".join(_texts(sr))
        assert "not a diagnosis" in texts.lower()
        assert "95% CI" in texts  # the operating point's measured sensitivity/specificity
        names = {str(i.ConceptNameCodeSequence[0].CodeMeaning) for i in _content_items(sr)}
        assert {"Algorithm Name", "Algorithm Version", "Model file SHA-256"} <= names
        assert {"Suspicion score (0-100)", "Screening category", "Measured sensitivity"} <= names
        sc = _sr(pacs, got["SC"][0])
        assert sc.StudyInstanceUID == chest_uid and sc.BurnedInAnnotation == "YES"
        assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert sc.PhotometricInterpretation == "RGB" and sc.Columns <= 1024

        # Mammography: one SR over both FOR PRESENTATION views, one SC per view.
        got = chain.wait_results(pacs, mammo, sc=2, limit_s=300)
        assert len(got["SR"]) == 1 and len(got["SC"]) == 2
        sr = _sr(pacs, got["SR"][0])
        assert sr.StudyInstanceUID == mammo_uid
        assert _referenced(sr) == {pydicom.dcmread(io.BytesIO(v)).SOPInstanceUID for v in views}
        tags = {t for t in _texts(sr) if t in {"L-MLO", "R-MLO"}}
        assert tags == {"L-MLO", "R-MLO"}

    chest_row = _received(chain, chest_uid, "done")
    assert chest_row["kind"] == "chest" and chest_row["source"] == "ORTHANC"
    assert [e["reason"] for e in chest_row["reason"]["excluded"]] == ["lateral"]
    mammo_row = _received(chain, mammo_uid, "done")
    assert [e["reason"] for e in mammo_row["reason"]["excluded"]] == ["for_processing"]

    # What was sent is recorded: every object sent once accepted, to the configured PACS.
    sent = chain.settled_exports({chest_uid, mammo_uid})
    assert sorted(e["kind"] for e in sent) == ["sc", "sc", "sc", "sr", "sr"]
    assert {e["status"] for e in sent} == {"sent"} and all(e["attempts"] >= 1 for e in sent)
    assert all(e["destination"].startswith("dimse://ORTHANC@127.0.0.1:") for e in sent)

    # The studies belong to the integration account: the verified doctor they are shared
    # with reads them; a doctor not (yet) verified and a patient do not.
    ids = {chest_row["study_id"], mammo_row["study_id"]}
    history = chain.doctor.get("/v1/studies", params={"limit": 100}).json()["items"]
    assert ids <= {s["id"] for s in history}
    for study_id in ids:
        assert chain.doctor.get(f"/v1/studies/{study_id}").json()["status"] == "succeeded"
        assert chain.unverified.get(f"/v1/studies/{study_id}").status_code == 404
        assert chain.patient.get(f"/v1/studies/{study_id}").status_code == 404
    assert chain.unverified.get("/v1/studies").json()["total"] == 0
    assert chain.patient.get("/v1/studies").json()["total"] == 0


def _stow_from_pacs(chain: DicomSystem, pacs: httpx.Client, files: list[bytes]) -> None:
    """Orthanc sends a study to the gateway by STOW-RS (its DICOMweb client)."""
    study = chain.upload_study(pacs, files)
    r = pacs.post("/dicom-web/servers/irmi/stow", json={"Resources": [study]})
    assert r.status_code == 200, r.text


def test_refusals_are_recorded_with_their_reason(chain: DicomSystem) -> None:
    film, woman = films.chest_films()[1], films.mammo_women()[1]
    (l_film, l_tag), (r_film, r_tag) = woman
    cases: dict[str, tuple[list[bytes], str, str | None]] = {}
    uid = generate_uid()
    cases[uid] = (
        [films.chest_dicom(film, uid, "R1", view_position="LL")],
        "unsupported_view",
        None,
    )
    uid = generate_uid()
    cases[uid] = ([films.chest_dicom(film, uid, "R2", body_part="KNEE")], "not_a_chest_xray", None)
    uid = generate_uid()
    raw = [films.mammo_dicom(p, t, uid, "R3", intent="FOR PROCESSING") for p, t in woman]
    cases[uid] = (raw, "unsupported_dicom", "for_processing")
    uid = generate_uid()
    cases[uid] = (
        [films.mammo_dicom(l_film, l_tag, uid, "R4", frames=3)],
        "unsupported_dicom",
        "tomosynthesis",
    )
    uid = generate_uid()
    twice = [films.mammo_dicom(l_film, l_tag, uid, "R5", instance_number=i) for i in (1, 2)]
    cases[uid] = (
        [*twice, films.mammo_dicom(r_film, r_tag, uid, "R5")],
        "unsupported_dicom",
        "multiple_images_per_view",
    )
    with chain.pacs.client() as pacs:
        for files, _, _ in cases.values():
            _stow_from_pacs(chain, pacs, files)
    for study_uid, (_, code, reason) in cases.items():
        row = _received(chain, study_uid, "refused")
        assert row["source"] == "stow-rs" and row["study_id"] is None
        assert row["reason"]["code"] == code, row
        assert row["reason"]["message"]
        if reason is not None:
            assert row["reason"]["details"]["reason"] == reason
    assert not [e for e in chain.exports() if e["study_uid"] in cases]


def _stow(
    chain: DicomSystem, parts: list[bytes], key: str | None = None, **headers: str
) -> httpx.Response:
    boundary = "irmi-test-boundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    ctype = headers.pop(
        "content_type", f'multipart/related; type="application/dicom"; boundary={boundary}'
    )
    return httpx.post(
        chain.gw.url + "/v1/dicomweb/studies",
        content=body,
        headers={"X-API-Key": key or chain.key, "Content-Type": ctype},
        timeout=60,
    )


def test_stow_rs_answers_per_instance_and_only_to_the_integration_account(
    chain: DicomSystem,
) -> None:
    uid = generate_uid()
    good = films.chest_dicom(films.chest_films()[2], uid, "ST1")
    sop = str(pydicom.dcmread(io.BytesIO(good)).SOPInstanceUID)

    # A patient's own studies key is no integration account.
    key = chain.patient.post("/v1/api-keys", json={"name": "mine", "scopes": ["studies"]}).json()[
        "key"
    ]
    r = _stow(chain, [good], key=key)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

    r = _stow(chain, [good], content_type="multipart/form-data; boundary=x")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_format"

    # Stored, and stored again (a retrying sender): success both times, kept once.
    for _ in range(2):
        r = _stow(chain, [good])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/dicom+json")
        assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [sop]

    # One readable instance and one that is not DICOM: 202, each listed.
    r = _stow(
        chain,
        [films.chest_dicom(films.chest_films()[2], uid, "ST1", instance_number=2), b"not dicom"],
    )
    assert r.status_code == 202, r.text
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]

    # Nothing storable (no pixel data): 409 in the error envelope, with the failure reason.
    sr = pydicom.dcmread(io.BytesIO(good))
    del sr.PixelData
    out = io.BytesIO()
    sr.save_as(out)
    r = _stow(chain, [out.getvalue()])
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert r.json()["error"]["details"]["00081198"]["Value"][0]["00081197"]["Value"] == [0x0122]

    row = _received(chain, uid, "done")
    assert row["instances"] == 2  # the repeated instance counted once


def test_the_node_answers_c_echo_to_allowed_callers_only(chain: DicomSystem) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    with chain.pacs.client() as pacs:
        assert pacs.post("/modalities/irmi/echo", json={}).status_code == 200
    for calling, allowed in (("ORTHANC", True), ("INTRUDER", False)):
        ae = AE(ae_title=calling)
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", chain.node_dicom_port, ae_title="IRMI")
        assert assoc.is_established is allowed
        if allowed:
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()
        else:
            assert assoc.is_rejected


def _exports_of(chain: DicomSystem, study_uid: str) -> list[dict[str, Any]]:
    return [e for e in chain.exports() if e["study_uid"] == study_uid]


def test_results_wait_for_a_pacs_that_is_down_and_arrive_once_it_is_back(
    chain: DicomSystem,
) -> None:
    chain.pacs.stop()
    try:
        uid = generate_uid()
        r = _stow(chain, [films.chest_dicom(films.chest_films()[3], uid, "DN1")])
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 120
        exports: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            exports = _exports_of(chain, uid)
            if len(exports) == 2 and all(e["attempts"] >= 2 for e in exports):
                break
            time.sleep(0.5)
        assert sorted(e["kind"] for e in exports) == ["sc", "sr"]
        for e in exports:  # retried with backoff, still pending, the reason recorded
            assert e["status"] == "pending" and e["attempts"] >= 2, e
            assert "association" in e["last_error"]
    finally:
        chain.start_pacs()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        exports = _exports_of(chain, uid)
        if {e["status"] for e in exports} == {"sent"}:
            break
        time.sleep(0.5)
    assert {e["status"] for e in exports} == {"sent"}
    assert all(e["last_error"] is None for e in exports)
    with chain.pacs.client() as pacs:
        found = pacs.post("/tools/lookup", content=uid).json()
        study = next(f["ID"] for f in found if f["Type"] == "Study")
        got = chain.results_in_pacs(pacs, study)
    assert len(got["SR"]) == 1 and len(got["SC"]) == 1


def test_results_can_go_back_by_stow_rs(chain: DicomSystem) -> None:
    """The STOW-RS destination (IRMI_GATEWAY_DICOM_DEST=stow) against Orthanc's DICOMweb."""
    from gateway.dicom_send import SendFailed, stow
    from gateway.dicom_settings import DicomSettings

    data = films.chest_dicom(films.chest_films()[5], generate_uid(), "SW1")
    sop = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    good = DicomSettings(dicom_dest="stow", dicom_dest_url=chain.pacs.url + "/dicom-web")
    stow(good, data)
    with chain.pacs.client() as pacs:
        found = pacs.post("/tools/lookup", content=sop).json()
    assert [f["Type"] for f in found] == ["Instance"]
    wrong = DicomSettings(dicom_dest="stow", dicom_dest_url=chain.pacs.url + "/no-dicom-web")
    with pytest.raises(SendFailed, match="STOW-RS answered 404"):
        stow(wrong, data)


def test_c_store_is_not_acknowledged_while_the_gateway_cannot_store(chain: DicomSystem) -> None:
    """Run last: it stops the chain's gateway. No success before the instance is stored."""
    from pynetdicom import AE

    data = films.chest_dicom(films.chest_films()[4], generate_uid(), "GW1")
    ds = pydicom.dcmread(io.BytesIO(data))

    def c_store() -> int:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", chain.node_dicom_port, ae_title="IRMI")
        assert assoc.is_established
        try:
            return int(assoc.send_c_store(ds).Status)
        finally:
            assoc.release()

    chain.gw.proc.kill()
    chain.gw.proc.wait()
    assert c_store() == 0xA700  # Out of Resources: the sender keeps it and retries
    chain.gw = chain.start_gateway()
    assert c_store() == 0x0000
    metrics = httpx.get(chain.node.url + "/metrics", timeout=10).text
    assert 'irmi_dicom_instances_total{outcome="0xA700"} 1.0' in metrics
    _received(chain, str(ds.StudyInstanceUID), "done")
