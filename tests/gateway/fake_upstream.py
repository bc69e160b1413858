"""A stand-in inference service speaking the tb/bc wire contracts, for failure-mode tests only
(a service that dies mid-exam, one that hangs). The happy-path flow tests use the real
services. The behaviour is chosen per request by a marker appended to the uploaded bytes
(the gateway forwards them untouched): ``FAKE:hang`` (never answer / go silent mid-exam),
``FAKE:die`` (the connection breaks mid-exam, as when the service dies), ``FAKE:flaky`` (dies
mid-exam the first time these bytes come, succeeds the next), ``FAKE:slow`` (a 2 s pause
mid-exam), ``FAKE:reject`` (an in-stream ``not_a_mammogram`` error), ``FAKE:outside`` (a chest
result outside the validated population, score under the threshold), ``FAKE:contradict`` (the
same, claiming ``no_finding_flagged``: a broken contract); ``FAKE_MODE`` sets
a default for every request. ``/_debug/received`` lists the files received (base64), so that
tests can check what the gateway forwards (de-identified copies)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODE = os.environ.get("FAKE_MODE", "ok")


def _mode(data: bytes) -> str:
    for mode in ("hang", "die", "flaky", "slow", "reject", "outside", "contradict"):
        if data.endswith(f"FAKE:{mode}".encode()):
            return mode
    return MODE


app = FastAPI()
REQUEST_IDS: list[str] = []
SEEN: set[str] = set()  # digests of the uploads already received (for ``flaky``)
RECEIVED: list[str] = []  # base64 of every uploaded file, in order (what the gateway sent)


@app.get("/_debug/request-ids")
async def request_ids() -> list[str]:
    return REQUEST_IDS


@app.get("/_debug/received")
async def received() -> list[str]:
    return RECEIVED


@app.get("/v2/health/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


def _png_size(data: bytes) -> tuple[int, int]:
    """The film's size as its score map must state it: a PNG's from its header, else 32 x 32."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 32, 32


@app.post("/v1/predict")
async def predict(request: Request) -> JSONResponse:
    REQUEST_IDS.append(request.headers.get("x-request-id", ""))
    form = await request.form()
    upload = form["file"]
    data = await upload.read()  # type: ignore[union-attr]
    RECEIVED.append(base64.b64encode(data).decode())
    if _mode(data) == "hang":
        await asyncio.sleep(3600)
    if len(data) < 100:
        return JSONResponse(
            {"error": {"code": "not_a_chest_xray", "message": "Not a chest X-ray.", "details": {}}},
            status_code=422,
        )
    mode = _mode(data)
    width, height = _png_size(data)
    model = {"name": "fake", "version": "0", "sha256": "0" * 64}
    rate = {"value": 0.9, "ci95": [0.8, 0.95], "n": 40}
    point = {"source": "card", "score_threshold": 50.0, "sensitivity": rate, "specificity": rate}
    body = {
        "validity": {"score": 0.9, "threshold": 0.5, "passed": True},
        "category": "review_recommended",
        "operating_point": {**point, "measured_on": "fake", "model": model},
        "label": "abnormal",
        "probabilities": {"normal": 0.3, "abnormal": 0.7},
        "score": 70.0,
        "threshold": 0.5,
        "findings": [],
        "score_map": {
            "values": [[0.0, 0.5], [1.0, 0.25]],
            "box": {"x0": 2, "y0": 2, "x1": 30, "y1": 30},
            "image_width": width,
            "image_height": height,
        },
        "crop_box": {"x0": 2, "y0": 2, "x1": 30, "y1": 30},
        "models": [model],
        "timings_ms": {"total": 1.0},
    }
    if mode in ("outside", "contradict"):
        body |= {
            "category": "outside_population" if mode == "outside" else "no_finding_flagged",
            "label": "normal",
            "probabilities": {"normal": 0.8, "abnormal": 0.2},
            "score": 20.0,
            "reliability": {"outside_population": True, "reasons": ["mirrored"]},
        }
    return JSONResponse(body)


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@app.post("/v1/exams")
async def exams(request: Request) -> StreamingResponse:
    form = await request.form()
    views = [(k, v) for k, v in form.multi_items()]
    mode = MODE
    for _, v in views:
        if hasattr(v, "read"):
            data = await v.read()
            RECEIVED.append(base64.b64encode(data).decode())
            mode = _mode(data)
            if mode == "flaky":
                digest = hashlib.sha256(data).hexdigest()
                mode = "ok" if digest in SEEN else "die"
                SEEN.add(digest)
    exam_id = uuid.uuid4().hex

    async def stream() -> AsyncIterator[str]:
        yield _sse("accepted", {"id": exam_id, "status": "queued"})
        for i, stage in enumerate(["decode", "crop", "heatmaps", "classify"]):
            await asyncio.sleep(0.05)
            yield _sse(
                "progress",
                {"stage": stage, "view": None, "percent": 20.0 * (i + 1), "elapsed_ms": 1.0},
            )
            if mode == "die" and i == 1:
                raise RuntimeError("simulated crash: the connection breaks mid-stream")
            if mode == "hang" and i == 1:
                await asyncio.sleep(3600)
            if mode == "slow" and i == 1:
                await asyncio.sleep(2)
            if mode == "reject" and i == 1:
                err = {"code": "not_a_mammogram", "message": "Not a mammogram.", "details": {}}
                yield _sse("error", {"error": err})
                return
        results = []
        for i, (tag, _) in enumerate(views):
            t = tag if tag in {"L-CC", "R-CC", "L-MLO", "R-MLO"} else "L-CC"
            results.append(
                {
                    "view_id": f"view-{i}",
                    "given_tag": t if tag != "files" else None,
                    "tag": t,
                    "laterality": t[0],
                    "view": t[2:],
                    "detected_laterality": t[0],
                    "detected_view": t[2:],
                    "detection_confidence": 0.9,
                    "flipped": False,
                    "crop_box": {"x0": 0, "y0": 0, "x1": 32, "y1": 32},
                    "score": 10.0,
                    "category": "no_finding_flagged",
                    "score_map": {
                        "values": [[0.0, 0.5], [1.0, 0.25]],
                        "box": {"x0": 0, "y0": 0, "x1": 32, "y1": 32},
                        "image_width": 32,
                        "image_height": 32,
                    },
                    "probabilities": {"benign": 0.2, "malignant": 0.1},
                    "label": "normal",
                }
            )
        exam = {
            "id": exam_id,
            "status": "succeeded",
            "created_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:01Z",
            "result": {
                "views": results,
                "breasts": [
                    {
                        "laterality": "L",
                        "views": ["view-0"],
                        "score": 10.0,
                        "category": "no_finding_flagged",
                        "probabilities": {"benign": 0.2, "malignant": 0.1},
                        "label": "normal",
                    }
                ],
                "score": 10.0,
                "category": "no_finding_flagged",
                "score_threshold": 71.27,
                "probabilities": {"benign": 0.2, "malignant": 0.1},
                "label": "normal",
            },
        }
        yield _sse("result", exam)

    return StreamingResponse(stream(), media_type="text/event-stream")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )
