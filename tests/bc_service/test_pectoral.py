"""The pectoral muscle of MLO views (bc_service.pipeline.pectoral) and the score map that
leaves it out, on synthetic phantoms with a bright pectoral triangle (and on mini-mias when
present: the detector finds a muscle on most of its MLO films, never an implausible one)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bc_service.pipeline import MammoPipeline, MammoState, ViewInput
from bc_service.pipeline.pectoral import muscle_of_view, pectoral_mask
from bc_service.pipeline.stages import preprocess_stages
from shared.contracts.mammo import ViewResult
from shared.imaging import decode_image
from shared.model import ModelRepository
from shared.settings import default_data_dir
from shared.transforms import Compose
from tests.imagegen import mammo_phantom, png_bytes

H, W = 512, 416
MIAS = default_data_dir() / "mini-mias"


def _prep(img: np.ndarray) -> MammoState:
    out: MammoState = Compose[MammoState](preprocess_stages())(
        MammoState(image=decode_image(png_bytes(img)))
    )
    return out


def _in_triangle(x: np.ndarray, y: np.ndarray, chest_wall: str) -> np.ndarray:
    """The phantom's pectoral triangle (tests.imagegen.mammo_phantom), original pixels."""
    if chest_wall == "right":
        x = W - 1 - x
    return np.asarray(x < 0.35 * W * (1 - y / (0.55 * H)))


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_bright_triangle_of_an_mlo_is_found(side: str) -> None:
    s = _prep(mammo_phantom(H, W, chest_wall=side, view="MLO", seed=2))
    assert s.work is not None and s.work_mask is not None
    found = muscle_of_view(s.work, s.work_mask, "MLO")
    # truth in working pixels: the phantom's muscle is its only tissue at 200 (chest wall left)
    truth = s.work_mask & (s.work > 180)
    truth[:, s.work.shape[1] // 2 :] = False
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.9, iou


def test_no_muscle_on_cc_views() -> None:
    s = _prep(mammo_phantom(H, W, view="CC", seed=2))
    assert s.work is not None and s.work_mask is not None
    assert not muscle_of_view(s.work, s.work_mask, "CC").any()
    # nor does the detector invent one where the corner is plain tissue
    assert not pectoral_mask(s.work, s.work_mask).any()
    mlo = _prep(mammo_phantom(H, W, view="MLO", seed=2))
    assert mlo.work is not None and mlo.work_mask is not None
    assert not muscle_of_view(mlo.work, mlo.work_mask, "CC").any()  # the view decides


def _run(img: np.ndarray, tag: str | None) -> ViewResult:
    pipe = MammoPipeline(ModelRepository(Path("/nonexistent-models")))  # heuristic patches
    view = ViewInput("view-0", decode_image(png_bytes(img)), tag)  # type: ignore[arg-type]
    return pipe.run_view(view, lambda stage, frac: None)


def _cells_inside(res: ViewResult, chest_wall: str) -> tuple[np.ndarray, np.ndarray]:
    """The map's values, and which cells lie wholly inside the pectoral triangle."""
    assert res.score_map is not None
    values = np.asarray(res.score_map.values)
    box = res.score_map.box
    rows, cols = values.shape
    xs = box.x0 + (box.x1 - box.x0) * np.arange(cols + 1) / cols
    ys = box.y0 + (box.y1 - box.y0) * np.arange(rows + 1) / rows
    inside = np.ones((rows, cols), bool)
    for dy in (0, 1):
        for dx in (0, 1):
            gx, gy = np.meshgrid(xs[dx : cols + dx], ys[dy : rows + dy])
            inside &= _in_triangle(gx, gy, chest_wall)
    return values, inside


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_score_map_is_zero_on_the_pectoral_muscle(side: str) -> None:
    img = mammo_phantom(H, W, chest_wall=side, view="MLO", seed=4)
    lat = "R" if side == "right" else "L"
    values, inside = _cells_inside(_run(img, f"{lat}-MLO"), side)
    assert inside.sum() >= 4
    assert (values[inside] == 0).all(), values[inside]
    assert values[~inside].max() == 1.0  # the map still shows where the rest stands out
    # The same pixels read as a CC view keep the muscle: there it lights up the map.
    as_cc, _ = _cells_inside(_run(img, f"{lat}-CC"), side)
    assert as_cc[inside].max() > 0.2, as_cc[inside]
    # Untagged: the view is detected (MLO) and the muscle left out as well.
    untagged, _ = _cells_inside(_run(img, None), side)
    assert (untagged[inside] == 0).all()


@pytest.mark.skipif(not (MIAS / "labels.csv").exists(), reason=f"mini-mias absent at {MIAS}")
def test_mini_mias_muscles_are_plausible() -> None:
    """On every second mini-mias MLO film (161): a muscle on most, each a plausible share of the
    breast in its upper posterior corner."""
    with (MIAS / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))[::2]
    shares = []
    for r in rows:
        s: MammoState = Compose[MammoState](preprocess_stages())(
            MammoState(image=decode_image((MIAS / r["path"]).read_bytes()))
        )
        assert s.work is not None and s.work_mask is not None
        m = pectoral_mask(s.work, s.work_mask)
        shares.append(m.sum() / s.work_mask.sum())
        if m.any():  # in the upper posterior corner (chest wall left)
            ys, xs = np.nonzero(m)
            by, bx = np.nonzero(s.work_mask)
            assert ys.mean() < by.min() + 0.4 * (by.max() - by.min()), r["path"]
            assert xs.mean() < bx.min() + 0.4 * (bx.max() - bx.min()), r["path"]
    found = np.asarray(shares) > 0
    assert found.mean() >= 0.65, found.mean()  # 234 of all 322 films (73%) when measured
    assert all(0.01 <= x <= 0.45 for x in np.asarray(shares)[found])


def test_the_overlay_is_clear_over_the_muscle_and_cool_below_the_threshold() -> None:
    """The map of an MLO phantom rendered as the gateway renders it (gateway.score_overlay):
    at most 1024 px, no visible pixel over the muscle, no hot colour below the threshold."""
    from gateway.operating_point import read_at
    from gateway.score_overlay import render
    from shared.contracts.screening import OperatingPoint

    img = mammo_phantom(1400, 1100, chest_wall="left", view="MLO", seed=5)
    res = _run(img, "L-MLO")
    assert res.score_map is not None
    rate = {"value": 0.9, "ci95": [0.8, 0.95], "n": 40}
    point = OperatingPoint.model_validate(
        {
            "source": "card",
            "score_threshold": 60.0,
            "sensitivity": rate,
            "specificity": rate,
            "measured_on": "test",
            "model": {"name": "mammo-view", "version": "1", "sha256": "0" * 64},
        }
    )
    for score, hot_expected in ((59.0, False), (95.0, True)):
        out = render(res.score_map, score, read_at(score, point, None))
        assert out is not None and max(out.width, out.height) <= 1024
        rgba = np.asarray(Image.open(io.BytesIO(out.png)).convert("RGBA")).astype(int)
        hot = (rgba[..., 3] > 0) & (rgba[..., 0] > rgba[..., 2] + 40)
        assert hot.any() == hot_expected
        box = out.covers
        ys, xs = np.mgrid[0 : out.height, 0 : out.width].astype(np.float64)
        ox = box.x0 + (xs + 0.5) * (box.x1 - box.x0) / out.width
        oy = box.y0 + (ys + 0.5) * (box.y1 - box.y0) / out.height
        # deeper than two map cells (the overlay is bilinear between cell centres)
        muscle = _in_triangle_of(ox + 50, oy + 50, 1400, 1100)
        assert muscle.sum() > 1000
        assert (rgba[..., 3][muscle] == 0).all()


def _in_triangle_of(x: np.ndarray, y: np.ndarray, h: int, w: int) -> np.ndarray:
    """mammo_phantom's pectoral triangle of an h x w image, chest wall left."""
    return np.asarray(x < 0.35 * w * (1 - y / (0.55 * h)))
