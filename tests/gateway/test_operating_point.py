"""The gateway reads each chest result at the effective operating point (the card's, as the
real tb_service returns it), stores that reading beside tb_service's answer, renders the score
map at display size from it (no hot colour below the threshold), keeps results stored before
operating points readable at their own threshold, and never lets a film outside the validated
population read as "no finding"."""

from __future__ import annotations

import io
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.gateway.conftest import patient_api, run_gateway, sqlite_gateway_env
from tests.imagegen import png_bytes
from tests.tb_service.svc_helpers import chest_like, chest_png


def _rgba(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.mode == "P" and "transparency" in img.info  # palette PNG, alpha in tRNS
        return np.asarray(img.convert("RGBA")).astype(int)


def _hot(rgba: np.ndarray) -> np.ndarray:
    """Visible pixels of the yellow-to-red ramp (red above blue)."""
    return (rgba[..., 3] > 0) & (rgba[..., 0] > rgba[..., 2] + 40)


def _card_point(tb_url: str) -> dict[str, Any]:
    card = httpx.get(f"{tb_url}/v2/models/chest-abnormality", timeout=30).json()
    model = {k: card[k] for k in ("name", "version", "sha256")}
    return {**card["operating_point"], "source": "card", "model": model, "run_id": None}


def _legacy(result: dict[str, Any], study_id: str) -> dict[str, Any]:
    """The result as the gateway stored it before operating points (and reliability)."""
    old = {k: v for k, v in result.items() if k not in {"category", "operating_point"}}
    for key in ("score_map", "effective", "reliability"):
        old.pop(key)
    old["heatmap"] = {"url": f"/v1/studies/{study_id}/heatmaps/abnormal", "media_type": "image/png"}
    return old


def test_study_result_at_the_effective_point(upstreams: dict[str, str], tmp_path: Path) -> None:
    env = sqlite_gateway_env(tmp_path, upstreams["tb"], IRMI_GATEWAY_BC_URL=upstreams["bc"])
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "op@example.org")
        big = png_bytes(cv2.resize(chest_like(300, 260), (1200, 1400)))  # 1200 wide, 1400 high
        r = p.post("/v1/studies/chest", files={"file": ("x.png", big, "image/png")})
        assert r.status_code == 201, r.text
        study = r.json()
        res = study["chest_result"]
        point = _card_point(upstreams["tb"])
        assert res["operating_point"] == point  # tb_service's answer, kept as returned
        eff = res["effective"]
        assert eff["operating_point"] == point and eff["basis"] == "operating_point"
        assert eff["score_threshold"] == point["score_threshold"]
        flagged = res["score"] >= point["score_threshold"]
        outside = res["reliability"]["outside_population"]
        expected = (
            "outside_population"
            if outside
            else ("review_recommended" if flagged else "no_finding_flagged")
        )
        assert eff["category"] == res["category"] == expected
        # The overlay: rendered from the score map at display size (long side 1024 for a
        # 1200 x 1400 film), lying over the crop box.
        ref = res["heatmap"]
        assert ref["url"] == f"/v1/studies/{study['id']}/heatmaps/score_map"
        box = res["crop_box"]
        assert ref["covers"] == box == res["score_map"]["box"]
        f = 1024 / 1400
        assert abs(ref["width"] - math.ceil((box["x1"] - box["x0"]) * f)) <= 1
        assert abs(ref["height"] - math.ceil((box["y1"] - box["y0"]) * f)) <= 1
        png = p.get(ref["url"])
        assert png.status_code == 200
        rgba = _rgba(png.content)
        assert rgba.shape[:2] == (ref["height"], ref["width"])
        assert (rgba[..., 3] > 0).any()
        assert _hot(rgba).any() == (expected == "review_recommended")
        listed = p.get("/v1/studies").json()["items"][0]
        assert listed["category"] == expected and listed["label"] == res["label"]

        # A result stored before operating points still displays: read at its own 0-1
        # threshold x 100, saying so, its stored heatmap still served.
        with sqlite3.connect(tmp_path / "gw.db") as db:
            db.execute(
                "UPDATE studies SET result = ? WHERE id = ?",
                (json.dumps(_legacy(res, study["id"])), study["id"]),
            )
            db.execute("UPDATE study_files SET name = 'abnormal' WHERE role = 'heatmap'")
        old = p.get(f"/v1/studies/{study['id']}").json()["chest_result"]
        assert old["category"] is None and old["operating_point"] is None
        assert old["score_map"] is None and old["label"] == res["label"]
        legacy = old["effective"]
        assert legacy["basis"] == "legacy_threshold" and legacy["operating_point"] is None
        assert legacy["score_threshold"] == pytest.approx(100 * res["threshold"])
        was = "review_recommended" if res["label"] == "abnormal" else "no_finding_flagged"
        assert legacy["category"] == was
        assert p.get("/v1/studies").json()["items"][0]["category"] == was
        assert p.get(old["heatmap"]["url"]).content.startswith(b"\x89PNG")


def test_outside_population_is_never_no_finding(fakes: dict[str, Any], tmp_path: Path) -> None:
    """From upload to what is stored, listed and drawn: an image outside the validated
    population reads outside_population (grey overlay, no hot colour), and an upstream that
    claims "no finding" for one is refused as a broken contract, nothing stored."""
    env = sqlite_gateway_env(tmp_path, fakes["ok"].url)
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "out@example.org")
        png = chest_png(64, 64)
        r = p.post(
            "/v1/studies/chest", files={"file": ("x.png", png + b"FAKE:outside", "image/png")}
        )
        assert r.status_code == 201, r.text
        res = r.json()["chest_result"]
        assert res["score"] < res["effective"]["score_threshold"]
        assert res["effective"]["category"] == res["category"] == "outside_population"
        assert p.get("/v1/studies").json()["items"][0]["category"] == "outside_population"
        rgba = _rgba(p.get(res["heatmap"]["url"]).content)
        seen = rgba[..., 3] > 0
        assert seen.any() and not _hot(rgba).any()
        spread = rgba[..., :3].max(axis=-1) - rgba[..., :3].min(axis=-1)
        assert spread[seen].max() <= 40  # grey: the score is not trusted for this film

        bad = png + b"FAKE:contradict"
        r = p.post("/v1/studies/chest", files={"file": ("y.png", bad, "image/png")})
        assert r.status_code == 500 and r.json()["error"]["code"] == "processing_failed"
        assert p.get("/v1/studies").json()["total"] == 1
        key = p.post("/v1/api-keys", json={"name": "pacs", "scopes": ["predict"]}).json()["key"]
        k = httpx.Client(base_url=gw.url, headers={"X-API-Key": key}, timeout=60)
        r = k.post("/v1/predict/chest", files={"file": ("y.png", bad, "image/png")})
        assert r.status_code == 500 and r.json()["error"]["code"] == "processing_failed"
