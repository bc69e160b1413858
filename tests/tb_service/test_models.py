"""The committed chest models: integrity, I/O contract, and outputs on real test images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from shared.imaging import decode_image
from shared.model import OnnxModel, read_card
from shared.settings import default_data_dir
from tb_service.lungseg import committed_seg_model
from tb_service.preprocess import GATE_INPUT_SIZE, INPUT_SIZE, chest_pipeline_for, gate_pipeline
from tests.procs import served_version

pytest.importorskip("onnxruntime")

MODELS = Path(__file__).resolve().parents[2] / "tb_service" / "models"
GATE = MODELS / "chest-gate" / "1"
ABN_V1 = MODELS / "chest-abnormality" / "1"
# The served version: the highest committed one (chest-abnormality/3, the robust screen
# behind detail_side, exports an embedding besides probs/cam/subtype; /1 and /2 stay for the
# comparison rows).
ABN = MODELS / "chest-abnormality" / served_version(MODELS, "chest-abnormality")
DATA = default_data_dir()


def _test_images(n: int = 3) -> list[bytes]:
    out: list[bytes] = []
    for ds in ("nih-cxr14", "kermany-pediatric"):
        root = DATA / ds
        if not (root / "splits.csv").exists():
            continue
        with (root / "splits.csv").open() as fh:
            rows = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:n]
        out += [(root / p).read_bytes() for p in rows]
    return out


def _synthetic() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (2, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def gate() -> OnnxModel:
    m = OnnxModel(GATE, use_gpu=False, intra_op_threads=1, warmup_runs=1)
    m.load()  # verifies sha256 against the card
    return m


@pytest.fixture(scope="module")
def abn() -> OnnxModel:
    m = OnnxModel(ABN, use_gpu=False, intra_op_threads=1, warmup_runs=1)
    m.load()
    return m


def test_cards_have_the_contract() -> None:
    g, a = read_card(GATE), read_card(ABN)
    assert g.name == "chest-gate" and a.name == "chest-abnormality"
    assert g.labels == ["not_chest", "chest"] and a.labels == ["normal", "abnormal"]
    assert isinstance(g.threshold, dict) and 0 < g.threshold["chest"] < 1
    assert isinstance(a.threshold, dict) and 0 < a.threshold["abnormal"] < 1
    assert a.threshold["rule"] == "sensitivity>=0.90 on val"
    for card in (g, a):
        assert card.metrics["split"] == "test"
        assert "auc" in card.metrics["test"] and "ci95" in card.metrics["test"]["auc"]
        assert card.preprocessing["steps"] and card.limitations and card.intended_use
        assert card.model_extra is not None and card.model_extra["parity"]["ok"] is True
    assert a.model_extra is not None and a.model_extra["calibration"]["temperature"] > 0
    assert any("TB" in lim for lim in a.limitations)
    assert g.inputs[0].shape[1] == GATE_INPUT_SIZE and a.inputs[0].shape[1] == INPUT_SIZE
    assert (ABN / "report.md").exists() and (GATE / "report.md").exists()


def test_robust_card_has_operating_point_and_population() -> None:
    a = read_card(ABN)
    assert a.version == "3" and (ABN_V1 / "model.onnx").exists()
    assert (MODELS / "chest-abnormality" / "2" / "model.onnx").exists()
    extra = a.model_extra or {}
    op = a.card_point()
    assert op.score_threshold == pytest.approx(100 * a.threshold_for("abnormal"), abs=1e-3)
    for rate in (op.sensitivity, op.specificity):
        assert rate.n > 0 and rate.ci95[0] <= rate.value <= rate.ci95[1]
    assert op.measured_on
    rel = extra["reliability"]
    assert (ABN / rel["file"]).exists() and rel["limit_quantile"] == 0.95
    steps = {s["stage"]: s["params"] for s in a.preprocessing["steps"]}
    assert steps["working_side"]["side"] == 384 and steps["detail_side"]["side"] == 192
    assert any(o.name == "embedding" for o in a.outputs)


def test_version_2_keeps_the_pipeline_it_was_trained_behind() -> None:
    """/2 (trained before detail_side) can still be pinned and served as trained."""
    from shared.model import check_preprocessing
    from tb_service.lungseg import committed_seg_model

    v2 = read_card(MODELS / "chest-abnormality" / "2")
    pipe = chest_pipeline_for(v2, INPUT_SIZE, committed_seg_model())
    check_preprocessing(v2, pipe)
    assert "detail_side" not in pipe.stage_names() and "working_side" in pipe.stage_names()


def test_version_1_keeps_the_pipeline_it_was_trained_behind() -> None:
    """/1 (512 px working side, heuristic crop) can still be pinned and served as trained."""
    from shared.model import check_preprocessing

    v1 = read_card(ABN_V1)
    check_preprocessing(v1, chest_pipeline_for(v1, INPUT_SIZE))
    steps = {s["stage"]: s["params"] for s in v1.preprocessing["steps"]}
    assert steps["downscale"]["max_side"] == 512 and "lung_crop" in steps


def test_io_shapes_on_synthetic(gate: OnnxModel, abn: OnnxModel) -> None:
    out = abn.run({"image": _synthetic()})
    assert set(out) == {"probs", "cam", "subtype", "embedding"}
    assert out["embedding"].shape[0] == 2 and np.isfinite(out["embedding"]).all()
    assert out["probs"].shape == (2, 2) and out["subtype"].shape == (2, 2)
    assert out["cam"].shape == (2, INPUT_SIZE // 16, INPUT_SIZE // 16)
    assert np.allclose(out["probs"].sum(axis=1), 1, atol=1e-5)
    assert float(out["cam"].min()) >= 0.0
    g = gate.run({"image": np.zeros((3, GATE_INPUT_SIZE, GATE_INPUT_SIZE, 1), np.float32)})
    assert g["probs"].shape == (3, 2)


@pytest.mark.skipif(not (DATA / "nih-cxr14").exists(), reason=f"no chest data under {DATA}")
def test_real_test_images(gate: OnnxModel, abn: OnnxModel) -> None:
    files = _test_images()
    assert files
    decoded = [decode_image(b) for b in files]
    gx = np.stack([gate_pipeline()(d).image for d in decoded])
    chest_pipeline = chest_pipeline_for(abn.card, INPUT_SIZE, committed_seg_model())
    cx = np.stack([chest_pipeline(d).image for d in decoded])
    g = gate.run({"image": gx})["probs"]
    out = abn.run({"image": cx})
    assert np.all((g >= 0) & (g <= 1)) and np.allclose(g.sum(axis=1), 1, atol=1e-5)
    # Real chest films pass the gate at its threshold.
    t = read_card(GATE).threshold
    assert isinstance(t, dict)
    assert float(np.mean(g[:, 1] >= t["chest"])) >= 0.8
    assert np.all((out["probs"] >= 0) & (out["probs"] <= 1))
    assert np.isfinite(out["cam"]).all() and float(out["cam"].min()) >= 0
