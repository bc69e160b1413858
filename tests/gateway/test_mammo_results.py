"""A mammography exam through the real services (gateway, bc_service with its models): a file
that is not a mammogram is refused before any study exists; the result event stays small
whatever the image size (the overlays are resources the gateway renders from each view's
score map and serves); the overlays are at most 1024 px, lie on the breast and have no hot
colour below the operating point; view, breast and exam categories agree; results stored
before categories still display."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tests.bc_service.images import big_view
from tests.gateway.conftest import Api, patient_api, run_gateway, sqlite_gateway_env
from tests.imagegen import png_bytes

MAX_EVENT_BYTES = 100_000
TAGS = ("R-CC", "L-CC", "R-MLO", "L-MLO")


def raw_events(api: Api, path: str) -> list[tuple[str, str]]:
    """(event, data as sent) of an SSE stream, to its end."""
    out, kind, data = [], "message", []
    with api.stream("GET", path, timeout=300) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line == "":
                if data:
                    out.append((kind, "\n".join(data)))
                kind, data = "message", []
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    return out


def _rgba(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGBA")).astype(int)


def _hot(rgba: np.ndarray) -> np.ndarray:
    """Visible pixels of the yellow-to-red ramp (red above blue)."""
    return (rgba[..., 3] > 0) & (rgba[..., 0] > rgba[..., 2] + 40)


def _category(score: float, threshold: float) -> str:
    return "review_recommended" if score >= threshold else "no_finding_flagged"


def _legacy(result: dict[str, Any], study_id: str) -> dict[str, Any]:
    """The result as the gateway stored it before categories and score maps."""
    drop = {"score", "category", "score_threshold", "operating_point", "basis", "score_map"}
    old = {k: v for k, v in result.items() if k not in drop}
    old["views"] = [
        {
            **{k: v for k, v in view.items() if k not in drop},
            "heatmaps": {
                name: {"url": f"/v1/studies/{study_id}/heatmaps/{view['view_id']}-{name}"}
                for name in ("benign", "malignant")
            },
        }
        for view in result["views"]
    ]
    old["breasts"] = [{k: v for k, v in b.items() if k not in drop} for b in result["breasts"]]
    # Model 1 stored a three-way label everywhere (model 2 stores none).
    parts = zip(
        (old, *old["views"], *old["breasts"]),
        (result, *result["views"], *result["breasts"]),
        strict=True,
    )
    for part, now in parts:
        part["label"] = "normal" if now["category"] == "no_finding_flagged" else "malignant"
    return old


def test_four_big_views_give_a_small_result_and_served_overlays(
    upstreams: dict[str, str], tmp_path: Path
) -> None:
    env = sqlite_gateway_env(tmp_path, upstreams["tb"], IRMI_GATEWAY_BC_URL=upstreams["bc"])
    pixels = {t: big_view(t.startswith("R"), seed=i // 2) for i, t in enumerate(TAGS)}
    files = [(t, (f"{t}.png", png_bytes(pixels[t]), "image/png")) for t in TAGS]
    with run_gateway(env, tmp_path) as gw:
        p = patient_api(gw.url, "mammo@example.org")
        # Not a mammogram: refused at submission, so no study (no "Failed" in the history).
        blank = png_bytes(np.zeros((2000, 1500), np.uint8))
        r = p.post("/v1/studies/mammography", files=[("L-CC", ("b.png", blank, "image/png"))])
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_mammogram", r.text
        assert p.get("/v1/studies").json()["total"] == 0

        r = p.post("/v1/studies/mammography", files=files, timeout=300)
        assert r.status_code == 202, r.text
        accepted = r.json()
        events = raw_events(p, accepted["events_url"])
        kind, data = events[-1]
        assert kind == "result", events[-1]
        assert len(data.encode()) <= MAX_EVENT_BYTES, len(data.encode())
        result = json.loads(data)["mammography_result"]

        # Four views: each read with the other breast's view of the same kind, at the card's
        # point; a breast is flagged iff a view is, the exam iff a breast is.
        thr = result["score_threshold"]
        assert result["operating_point"]["score_threshold"] == thr
        assert result["unilateral_operating_point"]["score_threshold"] is not None
        assert "never a risk" in result["score_scale"]
        views = {v["view_id"]: v for v in result["views"]}
        flagged = "review_recommended"
        for breast in result["breasts"]:
            mine = [views[i] for i in breast["views"]]
            assert breast["score"] == max(v["score"] for v in mine)
            assert (breast["category"] == flagged) == any(v["category"] == flagged for v in mine)
            assert breast["comparison"] == "contralateral"
            assert breast["density"]["category"] in ("fatty", "fatty_glandular", "dense_glandular")
        assert result["score"] == max(b["score"] for b in result["breasts"])
        any_breast = any(b["category"] == flagged for b in result["breasts"])
        assert (result["category"] == flagged) == any_breast

        for view in result["views"]:
            assert view["comparison"] == "contralateral" and view["score_threshold"] == thr
            assert view["category"] == _category(view["score"], thr)
            ref = view["heatmaps"]["score_map"]
            assert set(view["heatmaps"]) == {"score_map"}
            assert max(ref["width"], ref["height"]) <= 1024
            assert ref["covers"] == view["crop_box"] == view["score_map"]["box"]
            png = p.get(ref["url"])
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            rgba = _rgba(png.content)
            assert rgba.shape[:2] == (ref["height"], ref["width"])
            seen = rgba[..., 3] > 0
            assert seen.any()
            # Nothing hot below the operating point; the strongest cell hot at or above it.
            assert _hot(rgba).any() == (view["category"] == "review_recommended")
            # On the breast: hardly any visible overlay pixel over the background.
            box = ref["covers"]
            original = pixels[view["given_tag"]]
            under = cv2.resize(
                original[box["y0"] : box["y1"], box["x0"] : box["x1"]],
                (ref["width"], ref["height"]),
                interpolation=cv2.INTER_AREA,
            )
            background = under < 8
            assert (seen & background).sum() <= 0.03 * seen.sum()

        # A result stored before categories still displays: its category from its label.
        study_id = accepted["id"]
        with sqlite3.connect(tmp_path / "gw.db") as db:
            db.execute(
                "UPDATE studies SET result = ? WHERE id = ?",
                (json.dumps(_legacy(result, study_id)), study_id),
            )
        old = p.get(f"/v1/studies/{study_id}").json()["mammography_result"]
        was = result["category"]
        assert old["basis"] == "legacy_label" and old["category"] == was
        assert old["score"] is None and old["score_threshold"] is None
        assert set(old["views"][0]["heatmaps"]) == {"benign", "malignant"}
        assert p.get("/v1/studies").json()["items"][0]["category"] == was
