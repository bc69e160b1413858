"""The committed lung segmentation model and the LungSegCrop step: Dice on real test films,
the crop keeping the lungs, the implausible-mask reason, the card checks, and the service
serving a screen trained behind lung_seg_crop."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.contracts.screening import ReliabilityReason
from shared.imaging import DecodedImage, decode_image, to_uint8
from shared.model import ModelCardError, OnnxModel, PreprocessingMismatch, read_card
from shared.settings import default_data_dir
from shared.transforms import Compose
from tb_service import preprocess
from tb_service.lungseg import (
    SEG_MODEL,
    LungSegCrop,
    committed_seg_model,
    lung_mask_on,
    seg_pipeline,
)
from tb_service.preprocess import Work
from tb_service.settings import MODELS_DIR
from tests.imagegen import png_bytes
from tests.onnxgen import chest_model_folders
from tests.tb_service.svc_helpers import client_for, settings_for

pytest.importorskip("onnxruntime")

SEG = MODELS_DIR / SEG_MODEL / "1"
MASKS = default_data_dir() / "lung-masks"
needs_masks = pytest.mark.skipif(
    not (MASKS / "splits.csv").exists(), reason=f"no lung-masks data under {MASKS}"
)
DICE_FLOOR = 0.85  # mean over the films; the card's test mean is 0.89 (see report.md)
DICE_FLOOR_FILM = 0.7


def _decoded(px: np.ndarray) -> DecodedImage:
    return DecodedImage(pixels=px, format="png", bits_stored=8, value_range=(0.0, 255.0))


def _noise(h: int = 300, w: int = 260) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (h, w)).astype(np.uint8)


def _test_films(n: int = 4) -> list[tuple[bytes, np.ndarray]]:
    with (MASKS / "splits.csv").open() as fh:
        ids = [r["id"] for r in csv.DictReader(fh) if r["split"] == "test"]
    out = []
    for i in ids:
        mask = to_uint8(decode_image((MASKS / "masks" / f"{i}.png").read_bytes()), gray=True)
        if mask.max() > 127:
            out.append(((MASKS / "images" / f"{i}.png").read_bytes(), mask > 127))
    return out[:n]


def _head(decoded: DecodedImage) -> Work:
    work: Work = Compose[Work](list(seg_pipeline())[:3])(decoded)
    return work


def test_card_records_its_pipeline_metrics_and_threshold() -> None:
    card = read_card(SEG)
    size = int(card.inputs[0].shape[1])  # type: ignore[arg-type]
    assert [s.model_dump(mode="json") for s in card.preprocessing.steps] == (
        seg_pipeline(size).describe()
    )
    for key in ("dice", "iou"):
        est = card.metrics.test[key]
        lo, hi = est["ci95"]
        assert lo <= est["value"] <= hi and est["n"] >= 5
    assert 0 < card.threshold_for("lung") < 1
    assert card.model_extra is not None and card.model_extra["parity"]["ok"] is True
    assert (SEG / "report.md").exists()


@needs_masks
def test_dice_on_real_test_films_and_the_crop_keeps_the_lungs() -> None:
    from tb_service.train.seg_data import dice

    crop = LungSegCrop(committed_seg_model())
    films = _test_films()
    assert films
    dices = []
    for data, truth in films:
        work = _head(decode_image(data))
        pred = lung_mask_on(work)
        pred = (
            cv2.resize(pred.astype(np.uint8), truth.shape[::-1], interpolation=cv2.INTER_NEAREST)
            > 0
        )
        dices.append(dice(pred, truth))
        assert dices[-1] >= DICE_FLOOR_FILM
        out = crop(work)
        assert out.reasons == []  # adult films of the training hospital: plausible
        x0, y0, x1, y1 = out.crop_box
        kept = truth[y0:y1, x0:x1].sum() / truth.sum()
        assert kept >= 0.97
        assert (x1 - x0) * (y1 - y0) < truth.size  # a real crop, not the whole film
    assert float(np.mean(dices)) >= DICE_FLOOR


def test_implausible_mask_keeps_the_whole_image_and_raises_the_reason() -> None:
    crop = LungSegCrop(committed_seg_model())
    work = _head(_decoded(_noise()))
    verdict = crop.check(work)
    assert not verdict.plausible and verdict.problems
    out = crop(work)
    assert out.reasons == [ReliabilityReason.implausible_lung_mask]
    assert out.crop_box == (0, 0, 260, 300) and out.pixels.shape == work.pixels.shape
    # Through the whole chest pipeline, onto ChestInput.reasons.
    chest = preprocess.chest_pipeline()(_decoded(_noise()))
    assert chest.reasons == [ReliabilityReason.implausible_lung_mask]
    assert chest.crop_box == (0, 0, 260, 300)


def test_describe_pins_the_segmentation_model() -> None:
    card = read_card(SEG)
    steps = preprocess.chest_pipeline().describe()
    (step,) = (s for s in steps if s["stage"] == "lung_seg_crop")
    assert step["params"]["model"] == {"name": SEG_MODEL, "version": "1", "sha256": card.sha256}
    assert step["params"]["threshold"] == card.threshold_for("lung")
    assert step["params"]["fallback"] == "whole_image"
    assert set(step["params"]["margin"]) == {"side", "top", "bottom"}


def test_a_seg_card_with_other_preprocessing_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / SEG_MODEL / "1"
    shutil.copytree(SEG, folder)
    card = json.loads((folder / "card.json").read_text())
    card["preprocessing"]["steps"][-1]["params"]["mode"] = "unit"
    (folder / "card.json").write_text(json.dumps(card))
    model = OnnxModel(folder, use_gpu=False, intra_op_threads=1, warmup_runs=1)
    model.load()
    with pytest.raises(PreprocessingMismatch):
        LungSegCrop(model)


def test_the_pipeline_a_card_records_is_the_one_built() -> None:
    seg = committed_seg_model()
    v1 = read_card(MODELS_DIR / "chest-abnormality" / "1")
    assert "lung_crop" in preprocess.chest_pipeline_for(v1, 128, seg).stage_names()
    data = v1.model_dump(mode="json")
    data["preprocessing"] = {"steps": preprocess.chest_pipeline(128, seg).describe()}
    behind_seg = type(v1).model_validate(data)
    assert "lung_seg_crop" in preprocess.chest_pipeline_for(behind_seg, 128, seg).stage_names()
    with pytest.raises(ModelCardError, match="lung-seg"):
        preprocess.chest_pipeline_for(behind_seg, 128, None)


def _behind_seg(root: Path) -> Path:
    """Make the fixture screen's card record the lung_seg_crop pipeline."""
    card_path = root / "chest-abnormality" / "1" / "card.json"
    card = json.loads(card_path.read_text())
    card["preprocessing"] = {"steps": preprocess.chest_pipeline(128).describe()}
    card_path.write_text(json.dumps(card))
    return root


async def test_service_serves_a_screen_behind_lung_seg_crop(tmp_path: Path) -> None:
    root = _behind_seg(chest_model_folders(tmp_path))
    async with client_for(settings_for(root)) as (_, c):
        assert (await c.get("/v2/health/ready")).status_code == 200
        r = await c.post("/v1/predict", files={"file": ("x.png", png_bytes(_noise()))})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "implausible_lung_mask" in body["reliability"]["reasons"]
        assert body["reliability"]["outside_population"] is True
        assert body["crop_box"] == {"x0": 0, "y0": 0, "x1": 260, "y1": 300}
        assert SEG_MODEL in [m["name"] for m in body["models"]]
        if (MASKS / "splits.csv").exists():
            data, _ = _test_films(1)[0]
            r = await c.post("/v1/predict", files={"file": ("f.png", data)})
            assert r.status_code == 200, r.text
            assert "implausible_lung_mask" not in r.json()["reliability"]["reasons"]


async def test_service_without_the_seg_model_is_not_ready(tmp_path: Path) -> None:
    root = chest_model_folders(tmp_path)
    shutil.rmtree(root / SEG_MODEL)
    with pytest.raises(FileNotFoundError, match="lung-seg"):
        async with client_for(settings_for(root)):
            pass
