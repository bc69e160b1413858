"""Every corpus file to every upload route of the running system (tb_service, bc_service and
the gateway on loopback, started once per session): a file the decoder must refuse gets a 4xx
envelope with the manifest's code; a decodable one gets a valid result or the domain refusal
(``not_a_chest_xray`` / ``not_a_mammogram``); never a 5xx; every service healthy afterwards."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from gateway.schemas import StudyDetail
from shared.contracts.chest import ChestPrediction
from shared.contracts.mammo import Exam, ViewResult
from tests.stress.system import System

HERE = Path(__file__).resolve().parent
MANIFEST: dict[str, dict[str, Any]] = json.loads((HERE / "manifest.json").read_text())
NAMES = sorted(MANIFEST)
REFUSALS = {"chest": "not_a_chest_xray", "mammo": "not_a_mammogram"}
ROUTES = [
    "tb /v1/predict",
    "tb /v1/predict/batch",
    "tb /api/tb",
    "bc /v1/predict",
    "bc /v1/exams",
    "gw /v1/studies/chest",
    "gw /v1/studies/mammography",
    "gw /v1/predict/chest",
    "gw /v1/predict/mammogram",
]
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def http(irmi_system: System) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=180) as c:
        yield c
    # every service alive and ready after the whole corpus went through every route
    for svc in (irmi_system.tb, irmi_system.bc, irmi_system.gw):
        assert svc.proc.poll() is None, svc.logs()[-2000:]
        assert httpx.get(svc.url + "/v2/health/ready", timeout=10).status_code == 200


def _envelope(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str), body
    return err


def _read_sse(r: httpx.Response) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in r.iter_lines():
        if line == "":
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
    return events


def _wait_study(c: httpx.Client, system: System, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while True:
        body: dict[str, Any] = c.get(system.gw.url + url, headers=system.bearer()).json()
        if body["status"] in {"succeeded", "failed"}:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _one_file(
    c: httpx.Client, url: str, part: tuple[str, bytes, str], schema: type[BaseModel]
) -> tuple[int, str]:
    """A one-file route: 200 with a body of ``schema``, or the error envelope's code."""
    r = c.post(url, files={"file": part})
    if r.status_code == 200:
        schema.model_validate(r.json())
        return 200, "ok"
    return r.status_code, _envelope(r)["code"]


def _outcome(route: str, c: httpx.Client, s: System, name: str, data: bytes) -> tuple[int, str]:
    """(HTTP status, "ok" or the error code) of one file sent to one route."""
    part = (name, data, "application/octet-stream")
    key = {"X-API-Key": s.key}
    if route == "tb /v1/predict":
        return _one_file(c, s.tb.url + "/v1/predict", part, ChestPrediction)
    if route == "tb /v1/predict/batch":
        r = c.post(s.tb.url + "/v1/predict/batch", files=[("files", part)])
        assert r.status_code == 200, r.text
        (item,) = r.json()["results"]
        if item["prediction"] is not None:
            ChestPrediction.model_validate(item["prediction"])
            return 200, "ok"
        return int(item["error"]["status"]), str(item["error"]["code"])
    if route == "tb /api/tb":
        r = c.post(s.tb.url + "/api/tb", json={"image": base64.b64encode(data).decode()})
        if r.status_code == 200:
            p = r.json()["prediction"]
            assert abs(p["abnormal"] + p["normal"] - 1) < 1e-3
            return 200, "ok"
        return r.status_code, _envelope(r)["code"]
    if route == "bc /v1/predict":
        return _one_file(c, s.bc.url + "/v1/predict", part, ViewResult)
    if route == "bc /v1/exams":
        with c.stream(
            "POST", s.bc.url + "/v1/exams", params={"stream": "true"}, files=[("files", part)]
        ) as r:
            if not r.headers.get("content-type", "").startswith("text/event-stream"):
                r.read()
                return r.status_code, _envelope(r)["code"]
            assert r.status_code < 300
            events = _read_sse(r)
        exam = Exam.model_validate([d for e, d in events if e == "result"][-1])
        if exam.status == "succeeded":
            return 200, "ok"
        assert exam.status == "failed" and exam.error is not None, exam
        return 422, str(exam.error["code"])
    if route == "gw /v1/studies/chest":
        r = c.post(s.gw.url + "/v1/studies/chest", files={"file": part}, headers=s.bearer())
        if r.status_code == 201:
            StudyDetail.model_validate(r.json())
            return 201, "ok"
        return r.status_code, _envelope(r)["code"]
    if route == "gw /v1/predict/chest":
        r = c.post(s.gw.url + "/v1/predict/chest", files={"file": part}, headers=key)
        if r.status_code == 200:
            ChestPrediction.model_validate(r.json())
            return 200, "ok"
        return r.status_code, _envelope(r)["code"]
    if route == "gw /v1/studies/mammography":
        r = c.post(
            s.gw.url + "/v1/studies/mammography", files=[("files", part)], headers=s.bearer()
        )
        if r.status_code != 202:
            return r.status_code, _envelope(r)["code"]
        study = _wait_study(c, s, r.json()["study_url"])
        StudyDetail.model_validate(study)
        if study["status"] == "succeeded":
            return 202, "ok"
        return 422, str(study["error"]["code"])
    if route == "gw /v1/predict/mammogram":
        r = c.post(s.gw.url + "/v1/predict/mammogram", files=[("files", part)], headers=key)
        if r.status_code == 200:
            Exam.model_validate(r.json())
            return 200, "ok"
        return r.status_code, _envelope(r)["code"]
    raise AssertionError(route)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", NAMES)
def test_corpus_file_on_route(
    irmi_system: System, http: httpx.Client, name: str, route: str
) -> None:
    data = (HERE / "files" / name).read_bytes()
    expected = MANIFEST[name]["decode"]
    status, code = _outcome(route, http, irmi_system, name, data)
    TRIED[route] = TRIED.get(route, 0) + 1
    assert status < 500, (name, route, status, code)
    if expected == "ok":
        domain = REFUSALS["chest" if route.startswith("tb") or "chest" in route else "mammo"]
        assert code in {"ok", domain}, (name, route, status, code)
        if code != "ok":
            assert status == 422, (name, route, status, code)
    else:
        assert code == expected, (name, route, status, code)
        assert 400 <= status < 500
