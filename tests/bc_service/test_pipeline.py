"""Pipeline stages on synthetic phantoms (always) and real mini-mias images (when present)."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import numpy as np
import pytest

from bc_service.pipeline import MammoPipeline, MammoState, ViewInput, geometry
from bc_service.pipeline.stages import Centers, parse_dicom_tag, preprocess_stages
from shared.contracts.mammo import STAGES, ViewResult
from shared.errors import NotAMammogram
from shared.imaging import decode_image
from shared.model import ModelRepository
from shared.settings import default_data_dir
from shared.transforms import Compose
from tests.imagegen import dicom_bytes, gradient, mammo_phantom, png_bytes

MIAS = default_data_dir() / "mini-mias"
needs_mias = pytest.mark.skipif(
    not (MIAS / "labels.csv").exists(), reason=f"mini-mias data absent at {MIAS}"
)


def _prep(img: np.ndarray) -> MammoState:
    state = MammoState(image=decode_image(png_bytes(img)))
    out: MammoState = Compose[MammoState](preprocess_stages())(state)
    return out


def _heuristic_pipeline() -> MammoPipeline:
    return MammoPipeline(ModelRepository(Path("/nonexistent-models")))


# ---------------------------------------------------------------- synthetic phantoms


@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_phantom_orientation_crop_and_centres(side: str, view: str) -> None:
    lesion = (140, 300, 14)
    s = _prep(mammo_phantom(chest_wall=side, view=view, lesion=lesion))
    assert s.chest_wall == side
    assert s.flipped == (side == "right")
    assert s.detected_laterality == ("R" if side == "right" else "L")
    assert s.detected_view == view
    # Crop keeps the lesion; in working coordinates the chest wall is on the left.
    lx = lesion[0] if side == "left" else 416 - 1 - lesion[0]
    x0, y0, x1, y1 = s.crop_box
    assert x0 <= lx < x1 and y0 <= lesion[1] < y1
    assert s.work is not None and s.work_mask is not None
    wx, wy = s.to_work(lx, lesion[1])
    assert s.work_mask[int(wy), int(wx)]
    assert s.work_mask[:, : s.work_mask.shape[1] // 10].mean() > s.work_mask[:, -10:].mean()
    # The film label is gone: nothing bright outside the breast.
    assert s.work[~s.work_mask].max(initial=0) == 0
    back = s.to_original(*s.to_work(lx, lesion[1]))
    assert abs(back[0] - lx) < 1e-6 and abs(back[1] - lesion[1]) < 1e-6
    s = Centers()(s)
    r, c = s.centre
    assert s.work_mask[r, c]
    assert len(s.patch_centres) > 0
    assert s.work_mask[s.patch_centres[:, 0], s.patch_centres[:, 1]].all()


def test_optimal_center_prefers_breast() -> None:
    m = np.zeros((100, 200), bool)
    m[20:80, 120:190] = True
    (r, c), cov = geometry.optimal_center(m, (50, 50))
    assert m[r, c] and cov > 0.5


def test_dicom_tags_parse() -> None:
    assert parse_dicom_tag({"ImageLaterality": "R", "ViewPosition": "MLO"}) == "R-MLO"
    assert parse_dicom_tag({"Laterality": "L", "ViewPosition": "CC"}) == "L-CC"
    assert parse_dicom_tag({"ViewPosition": "CC"}) is None


def _run(p: MammoPipeline, data: bytes, tag: str | None = None) -> tuple[ViewResult, list[str]]:
    seen: list[str] = []
    res = p.run_view(
        ViewInput("view-0", decode_image(data), tag),  # type: ignore[arg-type]
        lambda stage, frac: seen.append(stage),
    )
    return res, seen


def test_run_view_phantom_reports_every_stage_and_conflict() -> None:
    p = _heuristic_pipeline()
    img = mammo_phantom(chest_wall="right", view="MLO")
    res, seen = _run(p, png_bytes(img), "L-MLO")
    assert seen == STAGES
    assert res.detected_laterality == "R" and res.tag == "L-MLO" and res.laterality == "L"
    assert res.tag_conflict == (
        "The tag sent with the image says this is the left breast (L-MLO), but the chest wall "
        "is on the image's right, which the standard display convention uses for the right "
        "breast (laterality R)."
    )
    assert res.heatmaps == {}  # no inline full-size overlays unless asked for
    sm = res.score_map
    assert sm is not None and sm.box == res.crop_box
    assert (sm.image_width, sm.image_height) == (img.shape[1], img.shape[0])
    exam = p.combine([res])
    assert [b.laterality for b in exam.breasts] == ["L"]


def test_score_map_follows_the_upload_orientation() -> None:
    """A mirrored upload gives the mirrored map (the pipeline works chest wall left)."""
    p = _heuristic_pipeline()
    img = mammo_phantom(chest_wall="left", view="MLO", seed=3)
    left, _ = _run(p, png_bytes(img))
    right, _ = _run(p, png_bytes(np.ascontiguousarray(img[:, ::-1])))
    assert not left.flipped and right.flipped
    assert left.score_map is not None and right.score_map is not None
    assert [row[::-1] for row in left.score_map.values] == right.score_map.values
    w = img.shape[1]
    assert (right.crop_box.x0, right.crop_box.x1) == (w - left.crop_box.x1, w - left.crop_box.x0)
    assert max(max(row) for row in left.score_map.values) == 1.0


def test_categories_agree_across_view_breast_and_exam() -> None:
    """Breast and exam scores are maxima read at one threshold: a flagged view flags its
    breast and the exam, whatever the other views say."""
    p = _heuristic_pipeline()
    img = png_bytes(mammo_phantom(chest_wall="left", view="MLO", seed=1))
    res, _ = _run(p, img, "L-MLO")
    thr = p.score_threshold
    low = res.model_copy(update={"view_id": "view-1", "score": 0.0, "category": p.category(0.0)})
    high = res.model_copy(update={"score": 100.0, "category": p.category(100.0)})
    exam = p.combine([high, low])
    assert high.category == "review_recommended" and low.category == "no_finding_flagged"
    (breast,) = exam.breasts
    assert breast.score == 100.0 and breast.category == "review_recommended"
    assert exam.category == "review_recommended" and exam.score_threshold == thr
    calm = p.combine([low])
    assert calm.category == calm.breasts[0].category == "no_finding_flagged"


def test_dicom_other_modality_refused() -> None:
    p = _heuristic_pipeline()
    data = dicom_bytes(mammo_phantom(), modality="CT")
    with pytest.raises(NotAMammogram) as err:
        _run(p, data)
    assert err.value.details["modality"] == "CT"


def test_dicom_mg_tags_used() -> None:
    p = _heuristic_pipeline()
    data = dicom_bytes(
        mammo_phantom(chest_wall="left"),
        modality="MG",
        extra={"ImageLaterality": "L", "ViewPosition": "MLO"},
    )
    res, _ = _run(p, data)
    assert res.tag == "L-MLO" and res.given_tag is None and res.tag_conflict is None


def test_blank_image_refused() -> None:
    with pytest.raises(NotAMammogram):
        _run(_heuristic_pipeline(), png_bytes(np.zeros((64, 64), np.uint8)))


def test_gradient_has_no_breast_or_is_refused() -> None:
    # Without the gate model a gradient may pass the geometry; it must not crash.
    with contextlib.suppress(NotAMammogram):
        _run(_heuristic_pipeline(), png_bytes(gradient(128, 128)))


# ---------------------------------------------------------------- real mini-mias images


def _mias_rows() -> list[dict[str, str]]:
    with (MIAS / "labels.csv").open() as fh:
        return list(csv.DictReader(fh))


def _mias_lesions() -> dict[str, list[tuple[int, int, int]]]:
    out: dict[str, list[tuple[int, int, int]]] = {}
    with (MIAS / "lesions.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["x"] and r["radius"]:
                out.setdefault(r["path"], []).append((int(r["x"]), int(r["y"]), int(r["radius"])))
    return out


@needs_mias
def test_mias_orientation_both_sides() -> None:
    rows = _mias_rows()
    picked = [r for r in rows if r["laterality"] == "L"][:6] + [
        r for r in rows if r["laterality"] == "R"
    ][:6]
    for r in picked:
        s = _prep_file(r["path"])
        assert s.detected_laterality == r["laterality"], r["path"]
        assert s.flipped == (r["laterality"] == "R")
        assert s.detected_view == "MLO", r["path"]
        assert s.work_mask is not None
        assert s.work_mask[:, :20].mean() > s.work_mask[:, -20:].mean()


def _prep_file(name: str) -> MammoState:
    state = MammoState(image=decode_image((MIAS / name).read_bytes()))
    out: MammoState = Compose[MammoState](preprocess_stages())(state)
    return out


@needs_mias
def test_mias_crop_keeps_lesions_and_centres_in_breast() -> None:
    lesions = _mias_lesions()
    for name in sorted(lesions)[:12]:
        s = Centers()(_prep_file(name))
        assert s.work_mask is not None
        x0, y0, x1, y1 = s.crop_box
        for x, y, _r in lesions[name]:
            assert x0 <= x < x1 and y0 <= y < y1, name
            wx, wy = s.to_work(x, y)
            assert s.work_mask[min(int(wy), 511), min(int(wx), s.work_mask.shape[1] - 1)], name
        r, c = s.centre
        assert s.work_mask[r, c]
        assert s.work_mask[s.patch_centres[:, 0], s.patch_centres[:, 1]].all()
        # Labels and background removed: the crop is much smaller than the film.
        assert (x1 - x0) < 0.9 * s.image.width


@needs_mias
def test_mias_run_view_end_to_end() -> None:
    p = _heuristic_pipeline()
    res, seen = _run(p, (MIAS / "mdb001.png").read_bytes())
    assert seen == STAGES
    assert res.laterality == "R" and res.view == "MLO" and res.flipped
    assert res.score_map is not None and res.score_map.image_width == 1024


def test_heatmap_png_is_rgba_overlay() -> None:
    import base64

    import cv2

    from bc_service.pipeline import heatmap_png

    h = np.zeros((50, 60), np.float32)
    h[10:20, 10:20] = 0.8
    png = heatmap_png(h, (230, 0, 0))
    arr = cv2.imdecode(np.frombuffer(base64.b64decode(png.base64), np.uint8), cv2.IMREAD_UNCHANGED)
    assert (png.width, png.height) == (60, 50) and arr.shape == (50, 60, 4)
    assert tuple(arr[15, 15]) == (0, 0, 230, 200)  # BGRA: red, mostly opaque
    assert arr[0, 0, 3] == 0  # transparent where the probability is negligible


def test_implausible_breast_shape_refused() -> None:
    img = np.zeros((40, 2000), np.uint8)
    img[5:35, :] = 150
    with pytest.raises(NotAMammogram) as err:
        _run(_heuristic_pipeline(), png_bytes(img))
    assert err.value.details["reason"] == "breast_shape"
