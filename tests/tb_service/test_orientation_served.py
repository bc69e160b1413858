"""Orientation served (issue 13, item 4), with the committed models through the tb_service app:
a rotated film is turned upright and scored as the upright film is, with the crop box and the
heatmap on the upload as sent; a mirrored film is flagged, never corrected; an upside-down
film is never scored as if it were upright and unflagged."""

from __future__ import annotations

import asyncio
import csv
from typing import Any

import numpy as np
import pytest

from shared.imaging import decode_image, encode_png, to_uint8
from shared.settings import default_data_dir
from tb_service.orientation import box_to_uploaded
from tb_service.settings import MODELS_DIR, Settings
from tb_service.train.invariance import served_client
from tests.tb_service.svc_helpers import decode_heatmap

DATA = default_data_dir()
MODELS = ("chest-gate", "chest-abnormality", "chest-orientation")
SOURCES = ("nih-cxr14", "kermany-pediatric")

pytestmark = [
    pytest.mark.skipif(
        not all(any((MODELS_DIR / n).glob("*/model.onnx")) for n in MODELS),
        reason=f"real chest models {MODELS} not all committed under {MODELS_DIR}",
    ),
    pytest.mark.skipif(
        not all((DATA / s / "splits.csv").exists() for s in SOURCES),
        reason=f"real data folder {DATA} (nih-cxr14, kermany-pediatric) absent",
    ),
]

PER_SOURCE = 4


def _films() -> list[np.ndarray]:
    out = []
    for source in SOURCES:
        with (DATA / source / "splits.csv").open() as fh:
            paths = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
        for p in paths[:: len(paths) // PER_SOURCE][:PER_SOURCE]:
            out.append(to_uint8(decode_image((DATA / source / p).read_bytes())))
    return out


@pytest.fixture(scope="module")
def served() -> list[dict[str, Any]]:
    """Per film: the response of the upright upload, of each rotation and of the mirror."""
    films = _films()

    async def run() -> list[dict[str, Any]]:
        out = []
        async with served_client(Settings(use_gpu=False, onnx_intra_op_threads=1)) as c:
            for film in films:
                uploads = {f"rot{k}": np.rot90(film, k) for k in range(4)}
                uploads["mirror"] = np.fliplr(film)
                row: dict[str, Any] = {"size": (film.shape[1], film.shape[0])}
                for name, px in uploads.items():
                    files = {"file": ("f.png", encode_png(np.ascontiguousarray(px)), "image/png")}
                    r = await c.post("/v1/predict?heatmap=true", files=files)
                    row[name] = (r.status_code, r.json())
                out.append(row)
        return out

    return asyncio.run(run())


def _ok(resp: tuple[int, dict[str, Any]]) -> dict[str, Any] | None:
    return resp[1] if resp[0] == 200 else None


def test_upright_films_are_scored_as_uploaded(served: list[dict[str, Any]]) -> None:
    for row in served:
        body = _ok(row["rot0"])
        assert body is not None
        assert body["orientation"]["rotation_applied_deg"] == 0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotated_films_are_turned_upright_and_mapped_back(
    served: list[dict[str, Any]], k: int
) -> None:
    turned = 0
    for row in served:
        upright, body = _ok(row["rot0"]), _ok(row[f"rot{k}"])
        assert upright is not None
        if body is None or body["orientation"]["rotation_applied_deg"] != 90 * k:
            continue
        turned += 1
        # The same pixels reach the screen: the same score.
        assert body["probabilities"] == upright["probabilities"]
        ub = upright["crop_box"]
        box = box_to_uploaded((ub["x0"], ub["y0"], ub["x1"], ub["y1"]), row["size"], k)
        assert tuple(body["crop_box"][c] for c in ("x0", "y0", "x1", "y1")) == box
        # The heatmap lies over the upload as sent: the upright one, turned.
        hm_up, hm = decode_heatmap(upright["heatmap"]), decode_heatmap(body["heatmap"])
        assert hm.shape[:2] == np.rot90(np.zeros(row["size"][::-1]), k).shape
        assert np.array_equal(hm, np.rot90(hm_up, k))
        # So does the score map the gateway renders: its grid turned, over the same box.
        sm_up, sm = upright["score_map"], body["score_map"]
        assert tuple(sm["box"][c] for c in ("x0", "y0", "x1", "y1")) == box
        assert (sm["image_width"], sm["image_height"]) == (hm.shape[1], hm.shape[0])
        assert np.array_equal(np.array(sm["values"]), np.rot90(sm_up["values"], k))
    assert turned >= len(served) - 1, f"only {turned} of {len(served)} films turned by {90 * k}"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_rotated_film_is_never_scored_unflagged_the_wrong_way(
    served: list[dict[str, Any]], k: int
) -> None:
    """Turned right, refused, or flagged: never scored sideways or upside down as if upright."""
    for row in served:
        body = _ok(row[f"rot{k}"])
        if body is None:
            assert row[f"rot{k}"][1]["error"]["code"] == "not_a_chest_xray"
            continue
        right = body["orientation"]["rotation_applied_deg"] == 90 * k
        assert right or body["reliability"]["outside_population"], body["orientation"]


def test_mirrored_films_are_flagged_never_corrected(served: list[dict[str, Any]]) -> None:
    flagged = 0
    for row in served:
        body = _ok(row["mirror"])
        assert body is not None
        assert body["orientation"]["rotation_applied_deg"] == 0
        if body["orientation"]["mirrored_suspected"]:
            flagged += 1
            assert "mirrored" in body["reliability"]["reasons"]
            assert body["reliability"]["outside_population"] is True
    assert flagged >= len(served) // 2, f"only {flagged} of {len(served)} mirrored films flagged"
