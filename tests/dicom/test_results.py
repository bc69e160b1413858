"""The result objects IRMI sends back (gateway/dicom_export.py, dicom_sr.py, dicom_sc.py) and
the answers the DICOM node gives its callers (dicom_node/forward.py), on synthetic inputs."""

from __future__ import annotations

import io
from typing import Any

import cv2
import httpx
import numpy as np
import pydicom
import pytest

from dicom_node.forward import OUT_OF_RESOURCES, status_of
from gateway.dicom_export import Source, build_objects
from gateway.dicom_sc import compose
from gateway.dicom_send import SendFailed, c_store
from gateway.dicom_settings import DicomSettings
from shared.contracts.common import CropBox
from shared.imaging import encode_dicom
from tests.procs import free_port

MODEL = {"name": "chest-abnormality", "version": "2", "sha256": "ab" * 32}
POINT = {
    "source": "card",
    "score_threshold": 40.0,
    "sensitivity": {"value": 0.81, "ci95": [0.74, 0.87], "n": 120},
    "specificity": {"value": 0.7, "ci95": [0.62, 0.77], "n": 140},
    "measured_on": "test split",
    "model": MODEL,
}


def source(study_uid: str = "1.2.826.0.1.1", **extra: str) -> bytes:
    pixels = np.full((400, 300), 100, np.uint8)
    tags = {
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": pydicom.uid.generate_uid(),
        "PatientID": "P7",
        "PatientName": "Doe^Jane",
        **extra,
    }
    return encode_dicom(pixels, modality="DX", extra=tags)


def overlay_png(w: int, h: int) -> bytes:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    rgba[..., 3] = 255
    ok, buf = cv2.imencode(".png", rgba)
    assert ok
    return buf.tobytes()


def values(ds: pydicom.Dataset) -> list[str]:
    """Every text value and code meaning of an SR's content tree."""
    out = []
    for item in getattr(ds, "ContentSequence", []):
        out += [str(item.get("TextValue", ""))]
        out += [str(c.CodeMeaning) for c in item.get("ConceptCodeSequence", [])]
        out += values(item)
    return out


def test_chest_sr_and_sc_reference_the_source_in_its_study() -> None:
    data = source()
    result = {
        "score": 63.0,
        "category": "review_recommended",
        "effective": {
            "category": "review_recommended",
            "score_threshold": 40.0,
            "operating_point": POINT,
        },
        "models": [MODEL],
        "disclaimer": "Screening aid, not a diagnosis: a clinician must review this image.",
    }
    src = Source(data, overlay_png(100, 100), CropBox(x0=50, y0=50, x1=150, y1=150))
    sr_obj, sc_obj = build_objects("chest", result, [src])
    ref = pydicom.dcmread(io.BytesIO(data))
    sr = pydicom.dcmread(io.BytesIO(sr_obj.data))
    assert (sr_obj.kind, sc_obj.kind) == ("sr", "sc")
    assert sr.StudyInstanceUID == ref.StudyInstanceUID and sr.PatientID == "P7"
    assert sr.CompletionFlag == "COMPLETE"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ref.SOPInstanceUID
    flat = " ".join(values(sr))
    for text in (
        "not a diagnosis",
        "0.810 (95% CI 0.740-0.870, n=120)",
        "ab" * 32,
        "Review recommended",
    ):
        assert text in flat
    sc = pydicom.dcmread(io.BytesIO(sc_obj.data))
    assert (
        sc.StudyInstanceUID == ref.StudyInstanceUID and sc.SeriesInstanceUID != sr.SeriesInstanceUID
    )
    assert sc.SOPInstanceUID != sr.SOPInstanceUID != ref.SOPInstanceUID


def test_mammography_sr_has_one_view_container_per_image() -> None:
    study = "1.2.826.0.1.2"
    views = [source(study), source(study)]
    result = {
        "score": 70.0,
        "category": "review_recommended",
        "score_threshold": 50.0,
        "operating_point": {**POINT, "score_threshold": 50.0},
        "models": [MODEL, {**MODEL, "name": "mammo-view"}],
        "disclaimer": "Screening aid, not a diagnosis: a radiologist must review these images.",
    }
    sources = [
        Source(views[0], None, None, "L-MLO", 70.0, None),
        Source(views[1], None, None, "R-MLO", 12.0, None),
    ]
    built = build_objects("mammography", result, sources)
    assert [b.kind for b in built] == ["sr", "sc", "sc"]
    sr = pydicom.dcmread(io.BytesIO(built[0].data))
    containers = [i for i in sr.ContentSequence if i.ValueType == "CONTAINER"]
    assert len(containers) == 2
    refs = {
        str(j.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for c in containers
        for j in c.ContentSequence
        if j.ValueType == "IMAGE"
    }
    assert refs == {str(pydicom.dcmread(io.BytesIO(v)).SOPInstanceUID) for v in views}


def test_overlay_is_blended_only_where_it_covers_and_a_caption_is_burned_in() -> None:
    pixels = compose(source(), overlay_png(100, 100), CropBox(x0=50, y0=50, x1=150, y1=150), "IRMI")
    assert pixels.shape == (400 + 28, 300, 3)
    assert tuple(pixels[100, 100]) == (255, 0, 0)  # inside the box: the overlay's red
    assert tuple(pixels[10, 10]) == (100, 100, 100)  # outside: the film
    assert pixels[400:].max() > 200 and pixels[400:].min() == 0  # white text on the band


def test_a_destination_that_is_down_is_a_send_failure() -> None:
    settings = DicomSettings(dicom_dest="dimse", dicom_dest_port=free_port(), dicom_timeout_s=2)
    with pytest.raises(SendFailed, match="association"):
        c_store(settings, source())


@pytest.mark.parametrize(
    ("status", "body", "dimse"),
    [
        (200, {"00081199": {"vr": "SQ", "Value": [{}]}}, 0x0000),
        (
            202,
            {"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [0x0122]}}]}},
            0x0122,
        ),
        (
            409,
            {
                "error": {
                    "code": "conflict",
                    "message": "-",
                    "details": {
                        "00081198": {
                            "vr": "SQ",
                            "Value": [{"00081197": {"vr": "US", "Value": [0xC000]}}],
                        }
                    },
                }
            },
            0xC000,
        ),
        (401, {"error": {}}, 0x0124),
        (503, {"error": {}}, OUT_OF_RESOURCES),
        (500, {}, OUT_OF_RESOURCES),
    ],
)
def test_node_turns_gateway_answers_into_c_store_statuses(
    status: int, body: object, dimse: int
) -> None:
    assert status_of(httpx.Response(status, json=body)) == dimse


def test_export_backoff_doubles_up_to_its_cap() -> None:
    from types import SimpleNamespace

    from gateway.dicom_export import backoff_s

    state: Any = SimpleNamespace(
        settings=DicomSettings(dicom_export_backoff_s=2, dicom_export_backoff_max_s=10)
    )
    assert [backoff_s(state, n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
