"""The view model (per-view P(benign), P(malignant) from heatmap statistics): out-of-fold
features for its training set, two logistic regressions, thresholds, test figures beside the
HOG baseline, the export, and the time per view through the serving pipeline."""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.features import PATCH_LABELS, VIEW_FEATURES
from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from bc_service.train.baseline import hog_baseline
from bc_service.train.heatmaps import keras_predictor, localisation, onnx_predictor, run_views
from bc_service.train.patch import fit_patch_model
from bc_service.train.publish import write_view
from bc_service.train.workspace import MODELS, WORK, Config, load_json, model_folder, save_json
from shared.train.plots import plot_confusion, plot_roc

log = logging.getLogger("irmi.bc.train")

OOF_JSON, VIEW_JSON = WORK / "oof_features.json", WORK / "view.json"
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _woman(path: str) -> int:
    """mini-mias numbers the images of one woman 2k-1 and 2k (``mdb001`` and ``mdb002``)."""
    return (int(path[3:6]) + 1) // 2


def step_oof(cfg: Config) -> dict[str, Any]:
    """Out-of-fold heatmap features for the train split (folds grouped by woman), so the view
    model learns from heatmaps of images its patch model never saw."""
    items = tdata.by_split(tdata.prepare_all(cfg.data_dir / "mini-mias"), "train")
    groups = sorted({_woman(p.case.path) for p in items})
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(groups)
    fold_of = {g: i % cfg.folds for i, g in enumerate(groups)}
    features: dict[str, list[float]] = {}
    for fold in range(cfg.folds):
        fit_on = [p for p in items if fold_of[_woman(p.case.path)] != fold]
        held_out = [p for p in items if fold_of[_woman(p.case.path)] == fold]
        model, _ = fit_patch_model(cfg, fit_on, None, cfg.fold_epochs, seed=100 + fold)
        for v in run_views(held_out, keras_predictor(model)):
            features[v.path] = [float(a) for a in v.features]
        log.info("fold %d done (%d held out)", fold, len(held_out))
    save_json(OOF_JSON, features)
    return features


def _targets(items: list[tdata.Prepared]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(is benign, is malignant) per case."""
    benign = np.array([p.case.label == "benign" for p in items], np.int64)
    malignant = np.array([p.case.label == "malignant" for p in items], np.int64)
    return benign, malignant


def _fit_logistic(x: NDArray[Any], y: NDArray[Any], c: float) -> tuple[NDArray[Any], float]:
    """Class-balanced logistic regression on standardised features, returned as (w, b) on
    the raw features."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit((x - mu) / sd, y)
    w = lr.coef_[0] / sd
    b = float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))
    return w, b


def _sigmoid(z: NDArray[Any]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def step_view(cfg: Config) -> dict[str, Any]:
    from bc_service.train.nets import export_onnx, linear_sigmoid

    items = tdata.prepare_all(cfg.data_dir / "mini-mias")
    train, val, test = (tdata.by_split(items, s) for s in ("train", "val", "test"))
    oof = load_json(OOF_JSON)
    if oof is None:
        raise SystemExit("run the 'oof' step first")
    patch_model = onnx_predictor(model_folder("mammo-patch") / "model.onnx")
    test_views = run_views(test, patch_model)
    x_train = np.array([oof[p.case.path] for p in train], np.float64)
    x_val = np.array([v.features for v in run_views(val, patch_model)], np.float64)
    x_test = np.array([v.features for v in test_views], np.float64)
    y = {split: _targets(cases) for split, cases in (("train", train), ("val", val))}
    benign_test, malignant_test = _targets(test)
    weights, biases, chosen = [], [], {}
    for k, name in enumerate(("benign", "malignant")):
        y_train, y_val = y["train"][k], y["val"][k]
        best_auc, best_c = -1.0, 1.0
        for c in C_GRID:
            w, b = _fit_logistic(x_train, y_train, c)
            val_auc = tm.auc(y_val, x_val @ w + b)
            if val_auc > best_auc + 1e-9:
                best_auc, best_c = val_auc, c
        w, b = _fit_logistic(x_train, y_train, best_c)
        weights.append(w)
        biases.append(b)
        chosen[name] = {"C": best_c, "val_auc": round(best_auc, 4)}
    w_matrix = np.stack(weights, axis=1)
    b_vector = np.array(biases)
    folder = model_folder("mammo-view")
    model = linear_sigmoid(w_matrix, b_vector)
    parity = export_onnx(model, folder / "model.onnx", "features", "probs")
    p_val = _sigmoid(x_val @ w_matrix + b_vector)  # columns: P(benign), P(malignant)
    p_test = _sigmoid(x_test @ w_matrix + b_vector)
    benign_val, malignant_val = y["val"]
    thresholds = {
        "benign": round(tm.youden_threshold(benign_val, p_val[:, 0]), 4),
        "malignant": round(tm.youden_threshold(malignant_val, p_val[:, 1]), 4),
    }
    abnormal_test = ((benign_test + malignant_test) > 0).astype(int)
    abnormal_score = 1 - (1 - p_test[:, 0]) * (1 - p_test[:, 1])
    lesion = abnormal_test.astype(bool)
    malignant_of_lesions = malignant_test[lesion]
    malignancy_score = p_test[lesion, 1] - p_test[lesion, 0]
    # the raw heatmap statistic alone (no view model): the lesion map's maximum
    raw_lesion_max = x_test[:, VIEW_FEATURES.index("lesion_max")]
    baseline, baseline_scores = hog_baseline(cfg.data_dir)
    predicted_label = np.where(
        p_test[:, 1] >= thresholds["malignant"],
        2,
        np.where(p_test[:, 0] >= thresholds["benign"], 1, 0),
    )
    true_label = np.where(malignant_test == 1, 2, np.where(benign_test == 1, 1, 0))
    res: dict[str, Any] = {
        "C": chosen,
        "parity_max_abs_diff": parity,
        "threshold": thresholds,
        "test": {
            "n_views": len(test),
            "auc_normal_vs_abnormal": tm.bootstrap_ci(tm.auc, abnormal_test, abnormal_score),
            "auc_benign_vs_malignant": tm.bootstrap_ci(
                tm.auc, malignant_of_lesions, malignancy_score
            ),
            "auc_malignant_vs_rest": tm.bootstrap_ci(tm.auc, malignant_test, p_test[:, 1]),
            "auc_benign_vs_rest": tm.bootstrap_ci(tm.auc, benign_test, p_test[:, 0]),
            "auc_normal_vs_abnormal_raw_heatmap_max": tm.bootstrap_ci(
                tm.auc, abnormal_test, raw_lesion_max
            ),
            "malignant_at_threshold": tm.binary_at(
                malignant_test, p_test[:, 1], thresholds["malignant"]
            ),
            "benign_at_threshold": tm.binary_at(benign_test, p_test[:, 0], thresholds["benign"]),
            "label_confusion": tm.confusion(true_label, predicted_label, 3),
        },
        "val": {
            "auc_normal_vs_abnormal": round(
                tm.auc(
                    ((benign_val + malignant_val) > 0).astype(int),
                    1 - (1 - p_val[:, 0]) * (1 - p_val[:, 1]),
                ),
                4,
            ),
            "auc_malignant_vs_rest": round(tm.auc(malignant_val, p_val[:, 1]), 4),
        },
        "baseline_hog_lr": baseline,
        "localisation": localisation(test, test_views),
        "weights": {"W": w_matrix.round(5).tolist(), "b": b_vector.round(5).tolist()},
    }
    curves = {
        "normal_vs_abnormal": (abnormal_test, abnormal_score),
        "benign_vs_malignant": (malignant_of_lesions, malignancy_score),
    }
    for task, view_model_curve in curves.items():
        plot_roc(
            {"heatmaps + view model": view_model_curve, "HOG + LR baseline": baseline_scores[task]},
            folder / f"roc_{task}.png",
            f"mini-mias test: {task.replace('_', ' ')}",
        )
    plot_confusion(
        res["test"]["label_confusion"],
        PATCH_LABELS,
        folder / "confusion_test.png",
        "view label on test (thresholds from val)",
    )
    save_json(VIEW_JSON, res)
    write_view(cfg, res)  # the card must exist before the repository can load the model
    res["timing"] = measure_timing(cfg, test)
    save_json(VIEW_JSON, res)
    write_view(cfg, res)
    return res


def measure_timing(cfg: Config, cases: list[tdata.Prepared], n: int = 12) -> dict[str, Any]:
    """Per-view time by stage through MammoPipeline with the committed models (this machine)."""
    from bc_service.pipeline import MammoPipeline
    from bc_service.pipeline.timing import time_view
    from shared.model import ModelRepository

    repo = ModelRepository(MODELS, use_gpu=False)
    repo.load_all()
    pipe = MammoPipeline(repo)
    root = cfg.data_dir / "mini-mias"
    per_stage: dict[str, list[float]] = {}
    totals = []
    for p in cases[:n]:
        totals.append(time_view(pipe, (root / p.case.path).read_bytes(), per_stage)[0])
    cpu = platform.processor() or platform.machine()
    return {
        "n_views": len(totals),
        "machine": f"{cpu}, {os.cpu_count() or 0} CPUs (shared)",
        "median_ms_by_stage": {k: round(float(np.median(v)), 1) for k, v in per_stage.items()},
        "median_total_ms": round(float(np.median(totals)), 1),
        "note": "heatmap_png: encoding both overlay PNGs (8-bit palette with alpha) at the "
        "original size",
    }
