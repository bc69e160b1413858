"""bc_service over real HTTP (``python -m bc_service``, real pipeline and models): submitting
exams, status, cancel, overload, one-view predict, and every bad input."""

from __future__ import annotations

import re

import cv2
import httpx
import numpy as np
import pytest

from tests.bc_service.images import (
    HAVE_MIAS,
    NOT_MAMMOGRAMS,
    chest_xray,
    mammogram,
    not_a_mammogram,
    not_mammograms,
)
from tests.bc_service.sseclient import read_all, wait_status
from tests.imagegen import dicom_bytes, gradient, pillow_bytes, png_bytes

PNG = "image/png"


def submit(client: httpx.Client, files: list[tuple[str, tuple[str, bytes, str]]]) -> httpx.Response:
    return client.post("/v1/exams", files=files)


def test_exam_accepted_then_succeeds(client: httpx.Client) -> None:
    files = [
        ("L-MLO", ("l.png", mammogram(), PNG)),
        ("files", ("r.png", mammogram(right=True), PNG)),
    ]
    r = submit(client, files)
    assert r.status_code == 202, r.text[:500]
    body = r.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/v1/exams/{body['id']}"
    assert body["events_url"] == f"/v1/exams/{body['id']}/events"
    assert r.headers["location"] == body["status_url"]
    exam = wait_status(client, body["status_url"])
    assert exam["status"] == "succeeded", exam
    result = exam["result"]
    views = {v["view_id"]: v for v in result["views"]}
    assert set(views) == {"view-0", "view-1"}
    assert views["view-0"]["given_tag"] == "L-MLO" and views["view-1"]["given_tag"] is None
    for view in views.values():
        assert 0 <= view["score"] <= 100 and view["score_threshold"] is not None
        assert view["probabilities"] is None and view["label"] is None  # model 1's, deprecated
        assert "decode" in view["timings_ms"] and len(view["timings_ms"]) > 2
    # A left and a right MLO: each read with the other breast.
    assert [v["comparison"] for v in views.values()] == ["contralateral", "contralateral"]
    assert result["breasts"] and result["category"] in {"review_recommended", "no_finding_flagged"}
    assert {"combine", "queue_wait", "total"} <= set(result["timings_ms"])
    # the same exam, the same answer; the events end with that very model
    assert client.get(body["status_url"]).json() == exam
    events, _ = read_all(client, "GET", body["events_url"])
    assert events[-1].event == "result" and events[-1].json() == exam
    metrics = client.get("/metrics").text
    assert 'irmi_bc_exams_total{status="succeeded"}' in metrics
    assert 'stage="heatmaps"' in metrics or 'stage="classify"' in metrics


def test_unknown_exam_is_404(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/exams/nope"),
        ("DELETE", "/v1/exams/nope"),
        ("GET", "/v1/exams/nope/events"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_cancel_a_running_exam(client: httpx.Client) -> None:
    files = [("files", (f"{i}.png", mammogram(seed=i), PNG)) for i in range(2)]
    body = submit(client, files).json()
    with client.stream("GET", body["events_url"]) as stream:
        from tests.bc_service.sseclient import Stream

        events = Stream(stream).events()
        for ev in events:
            if ev.event == "progress" and ev.json()["stage"] not in {"queued", "decode"}:
                break  # the pipeline is running
        deleted = client.delete(body["status_url"])
        assert deleted.status_code == 200 and deleted.json()["status"] == "cancelled"
        rest = list(events)
    assert rest[-1].event == "result" and rest[-1].json()["status"] == "cancelled"
    assert client.get(body["status_url"]).json()["status"] == "cancelled"
    # a finished exam: DELETE forgets it
    assert client.delete(body["status_url"]).status_code == 200
    assert client.get(body["status_url"]).status_code == 404


def test_overload_is_503_with_retry_after(client: httpx.Client) -> None:
    # IRMI_BC_WORKERS=1, IRMI_BC_MAX_QUEUED_EXAMS=1: a third exam finds no place.
    files = [("files", ("a.png", mammogram(), PNG))] * 2
    first = submit(client, files).json()
    second = submit(client, files).json()
    third = submit(client, files)
    assert third.status_code == 503, third.text[:500]
    assert third.json()["error"]["code"] == "overloaded"
    assert int(third.headers["retry-after"]) >= 1
    busy_predict = client.post("/v1/predict", files={"file": ("a.png", mammogram(), PNG)})
    assert busy_predict.status_code == 503
    assert client.get(second["status_url"]).json()["status"] == "queued"
    for exam in (second, first):
        assert client.delete(exam["status_url"]).json()["status"] == "cancelled"


def test_predict_one_view(client: httpx.Client) -> None:
    r = client.post(
        "/v1/predict", files={"file": ("a.png", mammogram(), PNG)}, data={"view": "L-MLO"}
    )
    assert r.status_code == 200, r.text[:500]
    view = r.json()
    assert view["given_tag"] == "L-MLO" and view["comparison"] == "unilateral"
    assert view["category"] in {"review_recommended", "no_finding_flagged"}
    assert "decode" in view["timings_ms"]
    assert view["heatmaps"] == {}  # the full-size inline PNGs only when asked for
    grid = view["score_map"]
    assert grid["box"] == view["crop_box"] and 1 <= len(grid["values"]) <= 64
    assert view["category"] in {"review_recommended", "no_finding_flagged"}
    bad = client.post(
        "/v1/predict", files={"file": ("a.png", mammogram(), PNG)}, data={"view": "X-CC"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_view"


def test_predict_refuses_a_non_mammogram(client: httpx.Client) -> None:
    photo_r = client.post("/v1/predict", files={"file": ("p", not_a_mammogram(), "image/*")})
    assert photo_r.status_code == 422, photo_r.text[:500]
    assert photo_r.json()["error"]["code"] == "not_a_mammogram"


def test_a_chest_xray_is_refused_by_the_gate(client: httpx.Client) -> None:
    chest = chest_xray()
    if chest is None:
        pytest.skip("../shared/data/nih-cxr14 absent")
    r = client.post("/v1/predict", files={"file": ("c.jpg", chest, "image/jpeg")})
    assert r.status_code == 422, r.text[:500]
    error = r.json()["error"]
    assert error["code"] == "not_a_mammogram" and "score" in error["details"]


GIF = pillow_bytes(__import__("PIL.Image", fromlist=["Image"]).fromarray(gradient()), "GIF")


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([("files", ("empty.png", b"", PNG))], 422, "invalid_image"),
        ([("files", ("x.gif", GIF, "image/gif"))], 415, "unsupported_format"),
        ([("files", ("t.png", png_bytes(gradient())[:60], PNG))], 422, "invalid_image"),
        ([("files", (f"{i}.png", b"x", PNG)) for i in range(5)], 422, "invalid_view"),
        ([("X-CC", ("a.png", b"x", PNG))], 422, "invalid_view"),
        ([("L-CC", ("a.png", b"x", PNG)), ("L-CC", ("b.png", b"x", PNG))], 422, "invalid_view"),
        (
            [("files", ("ct.dcm", dicom_bytes(gradient(64, 64, np.uint16), modality="CT"), "a"))],
            422,
            "not_a_mammogram",
        ),
    ],
    ids=["zero-bytes", "gif", "truncated", "five-views", "bad-tag", "dup-tag", "ct"],
)
def test_bad_inputs_refused_before_accepting(
    client: httpx.Client, files: list, status: int, code: str
) -> None:
    r = submit(client, files)
    assert r.status_code == status, r.text[:500]
    assert r.json()["error"]["code"] == code


def test_tag_as_text_and_non_multipart(client: httpx.Client) -> None:
    r = client.post("/v1/exams", data={"L-CC": "not a file"}, files={"x": ("a", b"", PNG)})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_view"
    empty = client.post(
        "/v1/exams",
        content=b'--b0\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--b0--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b0"},
    )
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_view"
    r = client.post("/v1/exams", json={"views": []})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def _exams_total(client: httpx.Client) -> float:
    pattern = re.compile(r"^irmi_bc_exams_total\{[^}]*\} (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(client.get("/metrics").text))


def _refused_at_submission(client: httpx.Client, files: list, reason: str | None) -> None:
    """Refused before the exam exists: 422 ``not_a_mammogram`` naming the view, in both the
    202 mode and the stream mode (no stream is opened), and no exam was counted."""
    before = _exams_total(client)
    for path in ("/v1/exams", "/v1/exams?stream=true"):
        r = client.post(path, files=files)
        assert r.status_code == 422, r.text[:500]
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()["error"]
        assert error["code"] == "not_a_mammogram", error
        assert error["details"]["view"] == f"view-{len(files) - 1}"
        if reason is not None:
            assert error["details"].get("reason") == reason, error
    assert _exams_total(client) == before


def test_non_mammogram_refused_at_submission(client: httpx.Client) -> None:
    """A flat picture beside a real view: the whole exam is refused before it is accepted."""
    files = [
        ("L-MLO", ("l.png", mammogram(), PNG)),
        ("files", ("p.png", not_a_mammogram(), "image/*")),
    ]
    _refused_at_submission(client, files, "blank")


def test_huge_black_png_refused_at_submission(client: httpx.Client) -> None:
    """59 megapixels of black (under the decompression-bomb limit of 60 megapixels): blank."""
    black = png_bytes(np.zeros((7600, 7800), np.uint8))
    _refused_at_submission(client, [("files", ("black.png", black, PNG))], "blank")


@pytest.mark.skipif(not HAVE_MIAS, reason="the gate is off without mini-mias (phantoms)")
def test_noise_refused_by_the_gate_at_submission(client: httpx.Client) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1024, 832), dtype=np.uint8)
    _refused_at_submission(client, [("files", ("n.png", png_bytes(noise), PNG))], None)


def test_chest_dicom_tagged_mg_refused_at_submission(client: httpx.Client) -> None:
    """A chest X-ray in a DICOM that claims Modality MG: the tag passes, the gate does not."""
    chest = chest_xray()
    if chest is None or not HAVE_MIAS:
        pytest.skip("../shared/data (nih-cxr14 and mini-mias, for the gate) absent")
    gray = cv2.imdecode(np.frombuffer(chest, np.uint8), cv2.IMREAD_GRAYSCALE)
    dcm = dicom_bytes(gray.astype(np.uint16) * 16, bits_stored=12, modality="MG")
    _refused_at_submission(client, [("files", ("c.dcm", dcm, "application/dicom"))], None)


@pytest.mark.parametrize("name", NOT_MAMMOGRAMS)
def test_predict_refuses_what_is_not_a_mammogram(client: httpx.Client, name: str) -> None:
    """The one-view route refuses the same files as exam submission, synchronously."""
    upload = not_mammograms()[name]
    if upload is None:
        pytest.skip("needs ../shared/data (mini-mias for the gate, nih-cxr14 for the chest)")
    for data in ({}, {"view": "L-MLO"}):
        r = client.post("/v1/predict", files={"file": upload}, data=data)
        assert r.status_code == 422, r.text[:500]
        error = r.json()["error"]
        assert error["code"] == "not_a_mammogram" and error["details"]["view"] == "view-0"


def test_predict_refusal_does_not_wait_for_a_worker(client: httpx.Client) -> None:
    """With the only worker busy on an exam, a file that is not a mammogram is refused at
    once: the exam is still running when the refusal comes back."""
    files = [("files", (f"{i}.png", mammogram(seed=i), PNG)) for i in range(2)]
    exam = submit(client, files).json()
    try:
        r = client.post("/v1/predict", files={"file": ("p.png", not_a_mammogram(), PNG)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_mammogram"
        assert client.get(exam["status_url"]).json()["status"] in {"queued", "running"}
    finally:
        client.delete(exam["status_url"])


def test_openapi_documents_the_exchange(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/exams"]["post"]
    props = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(props) == {"L-CC", "R-CC", "L-MLO", "R-MLO", "files"}
    assert any(p["name"] == "stream" for p in post["parameters"])
    assert "text/event-stream" in post["responses"]["200"]["content"]
    assert "round-robin" in post["description"]
    assert "503" in post["responses"] and "202" in post["responses"]
    assert "/v1/exams/{exam_id}/events" in spec["paths"] and "/v1/predict" in spec["paths"]
