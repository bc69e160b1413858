"""Training, evaluation and export of the three mammography models (imports TensorFlow).

``python -m bc_service.train all`` runs: patch → gate → oof → view → activations.
Intermediate results go to ``var/mammo-train/``; models, cards, reports and plots to
``bc_service/models/<name>/1/``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.features import (
    GATE_SIZE,
    PATCH_LABELS,
    PATCH_SIZE,
    VIEW_FEATURES,
    WORK_HEIGHT,
)
from bc_service.pipeline.stages import Centers, Heatmaps, Predictor, classifier_features
from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from shared.imaging import DecodedImage
from shared.model import file_sha256
from shared.settings import REPO_ROOT, default_data_dir

log = logging.getLogger("irmi.bc.train")

MODELS = REPO_ROOT / "bc_service" / "models"
WORK = REPO_ROOT / "var" / "mammo-train"
STRIDE = 16
SOURCES = {
    "mini-mias": "Suckling et al., The Mammographic Image Analysis Society Digital Mammogram "
    "Database, Excerpta Medica ICS 1069, 1994 (research use only).",
    "nih-cxr14": "Wang et al., ChestX-ray8, CVPR 2017 (NIH Clinical Center).",
    "kermany-pediatric": "Kermany et al., Cell 2018; Mendeley Data, CC BY 4.0.",
}


@dataclass
class Config:
    data_dir: Path
    patch_epochs: int = 18
    fold_epochs: int = 8
    act_epochs: int = 4
    gate_epochs: int = 14
    per_lesion: int = 24
    normal_per_image: int = 12
    folds: int = 3
    max_chest: int = 350
    seed: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- preparation

_PREP: dict[str, tdata.Prepared] = {}


def prepared(cfg: Config) -> list[tdata.Prepared]:
    """All mini-mias cases through decode → orientation → crop → enhance (memoised; the
    original pixels are dropped to keep memory small)."""
    if not _PREP:
        root = cfg.data_dir / "mini-mias"
        for case in tdata.read_mias(root):
            p = tdata.prepare(root, case)
            p.state.gray8 = None
            p.state.mask = None
            p.state.image = DecodedImage(np.zeros((1, 1), np.uint8), "png", 8, (0.0, 255.0))
            _PREP[case.path] = p
    return list(_PREP.values())


def by_split(items: list[tdata.Prepared], split: str) -> list[tdata.Prepared]:
    return [p for p in items if p.case.split == split]


# --------------------------------------------------------------------------- patch model


def _fit_patch(
    cfg: Config,
    train_items: list[tdata.Prepared],
    val: tuple[NDArray[np.float32], NDArray[np.int64]] | None,
    epochs: int,
    activation: str = "softmax",
    seed: int = 0,
) -> tuple[Any, dict[str, list[float]]]:
    import keras

    from bc_service.train.nets import patch_model

    model = patch_model(activation, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    hist: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_macro_auc": []}
    best_auc, best_w = -1.0, None
    for ep in range(epochs):
        x, y = tdata.sample_patches(
            train_items,
            per_lesion=cfg.per_lesion,
            normal_per_image=cfg.normal_per_image,
            seed=seed * 1000 + ep,
            augment=True,
        )
        counts = np.bincount(y, minlength=3).astype(np.float64)
        cw = {k: float(len(y) / (3 * max(counts[k], 1))) for k in range(3)}
        h = model.fit(
            x, np.eye(3, dtype=np.float32)[y], batch_size=128, epochs=1, verbose=0, class_weight=cw
        )
        hist["loss"].append(float(h.history["loss"][0]))
        if val is not None:
            pv = _norm(model.predict(val[0], batch_size=256, verbose=0))
            vl = float(np.mean(-np.log(np.clip(pv[np.arange(len(val[1])), val[1]], 1e-7, 1))))
            hist["val_loss"].append(vl)
            va = _macro_auc(val[1], pv)
            hist["val_macro_auc"].append(va)
            log.info("epoch %d loss %.4f val_loss %.4f val_auc %.4f", ep, hist["loss"][-1], vl, va)
            if va > best_auc:
                best_auc, best_w = va, model.get_weights()
    if best_w is not None:
        model.set_weights(best_w)
    return model, hist


def _norm(p: NDArray[Any]) -> NDArray[np.float64]:
    """Outputs → probabilities (ReLU/Softplus heads are not normalised)."""
    p = np.clip(np.asarray(p, np.float64), 0, None)
    s = p.sum(axis=1, keepdims=True)
    out: NDArray[np.float64] = np.where(s > 0, p / np.where(s > 0, s, 1), 1.0 / p.shape[1])
    return out


def _macro_auc(y: NDArray[np.int64], p: NDArray[np.float64]) -> float:
    vals = [tm.auc(y == k, p[:, k]) for k in range(3)]
    return float(np.nanmean(vals))


def _fixed_patches(
    items: list[tdata.Prepared], seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    return tdata.sample_patches(items, per_lesion=10, normal_per_image=10, seed=seed, augment=False)


def patch_metrics(y: NDArray[np.int64], p: NDArray[np.float64]) -> dict[str, Any]:
    pred = p.argmax(axis=1)
    lesion = y > 0
    return {
        "n_patches": len(y),
        "per_class": {k: int((y == i).sum()) for i, k in enumerate(PATCH_LABELS)},
        "accuracy": tm.bootstrap_ci(tm.accuracy, y, pred),
        "auc_normal_vs_lesion": tm.bootstrap_ci(tm.auc, lesion.astype(int), 1 - p[:, 0]),
        "auc_benign_vs_malignant": tm.bootstrap_ci(
            tm.auc,
            (y[lesion] == 2).astype(int),
            p[lesion, 2] / (p[lesion, 1] + p[lesion, 2] + 1e-9),
        ),
        "macro_auc_one_vs_rest": round(_macro_auc(y, p), 4),
        "confusion": tm.confusion(y, pred, 3),
    }


def step_activations(cfg: Config) -> dict[str, Any]:
    """The report's Tables 6-8, on the patch model: the same network and budget with a ReLU,
    Softmax or Softplus output layer, trained with categorical cross-entropy."""
    items = prepared(cfg)
    tr, va, te = by_split(items, "train"), by_split(items, "val"), by_split(items, "test")
    val = _fixed_patches(va, 1)
    test = _fixed_patches(te, 2)
    out: dict[str, Any] = {"epochs": cfg.act_epochs, "rows": {}}
    for act in ("relu", "softmax", "softplus"):
        t0 = time.perf_counter()
        model, hist = _fit_patch(cfg, tr, val, cfg.act_epochs, activation=act, seed=7)
        pt = _norm(model.predict(test[0], batch_size=256, verbose=0))
        pv = _norm(model.predict(val[0], batch_size=256, verbose=0))
        raw = model.predict(test[0][:256], batch_size=256, verbose=0)
        out["rows"][act] = {
            "val_accuracy": round(tm.accuracy(val[1], pv.argmax(1)), 4),
            "test_accuracy": tm.bootstrap_ci(tm.accuracy, test[1], pt.argmax(1)),
            "test_macro_auc": round(_macro_auc(test[1], pt), 4),
            "dead_outputs_share": round(float(np.mean(np.all(raw <= 1e-6, axis=1))), 4),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "history": hist,
        }
        log.info("activation %s: %s", act, out["rows"][act]["test_accuracy"])
    _save_json(WORK / "activations.json", out)
    patch = _load_json(WORK / "patch.json")
    if patch is not None:
        write_patch_card(cfg, patch, out)
    return out


def step_patch(cfg: Config) -> dict[str, Any]:
    from bc_service.train.nets import export_onnx

    items = prepared(cfg)
    tr, va, te = by_split(items, "train"), by_split(items, "val"), by_split(items, "test")
    val = _fixed_patches(va, 1)
    test = _fixed_patches(te, 2)
    t0 = time.perf_counter()
    model, hist = _fit_patch(cfg, tr, val, cfg.patch_epochs, seed=cfg.seed)
    train_s = time.perf_counter() - t0
    folder = MODELS / "mammo-patch" / "1"
    parity = export_onnx(model, folder / "model.onnx", "patches", "probs")
    pt = _norm(model.predict(test[0], batch_size=256, verbose=0))
    pv = _norm(model.predict(val[0], batch_size=256, verbose=0))
    _, ytr = tdata.sample_patches(tr, per_lesion=5, normal_per_image=3, seed=3, augment=False)
    res = {
        "train_seconds": round(train_s, 1),
        "parity_max_abs_diff": parity,
        "history": hist,
        "val": patch_metrics(val[1], pv),
        "test": patch_metrics(test[1], pt),
        "train_counts": {k: int((ytr == i).sum()) for i, k in enumerate(PATCH_LABELS)},
        "params": int(model.count_params()),
    }
    _save_json(WORK / "patch.json", res)
    write_patch_card(cfg, res, _load_json(WORK / "activations.json"))
    return res


# --------------------------------------------------------------------------- heatmaps


def _onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(sess.run(None, {name: x})[0], np.float32)

    return run


def _keras_predictor(model: Any) -> Predictor:
    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(model(x, training=False), np.float32)

    return run


@dataclass
class ViewOut:
    path: str
    features: NDArray[np.float32]
    heat_b: NDArray[np.float32]
    heat_m: NDArray[np.float32]


def run_views(items: list[tdata.Prepared], predictor: Predictor) -> list[ViewOut]:
    """Stages centers → heatmaps on prepared cases, exactly as the service runs them."""
    out = []
    centers = Centers(stride=STRIDE)
    heat = Heatmaps(predictor, stride=STRIDE, batch_size=256)
    for p in items:
        s = heat(centers(p.state))
        out.append(
            ViewOut(
                p.case.path, classifier_features(s), s.heatmaps["benign"], s.heatmaps["malignant"]
            )
        )
    return out


def step_oof(cfg: Config) -> dict[str, Any]:
    """Out-of-fold heatmap features for the train split (patient-grouped folds), so the view
    model learns from heatmaps of images its patch model never saw."""
    items = by_split(prepared(cfg), "train")
    patients = sorted({p.case.path for p in items})
    # mini-mias pairs images 2k-1/2k per woman: group by that pair.
    groups = sorted({(int(p[3:6]) + 1) // 2 for p in patients})
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(groups)
    fold_of = {g: i % cfg.folds for i, g in enumerate(groups)}
    feats: dict[str, list[float]] = {}
    for f in range(cfg.folds):
        fit = [p for p in items if fold_of[(int(p.case.path[3:6]) + 1) // 2] != f]
        held = [p for p in items if fold_of[(int(p.case.path[3:6]) + 1) // 2] == f]
        model, _ = _fit_patch(cfg, fit, None, cfg.fold_epochs, seed=100 + f)
        for v in run_views(held, _keras_predictor(model)):
            feats[v.path] = [float(a) for a in v.features]
        log.info("fold %d done (%d held out)", f, len(held))
    _save_json(WORK / "oof_features.json", feats)
    return feats


# --------------------------------------------------------------------------- view model


def _targets(items: list[tdata.Prepared]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    yb = np.array([p.case.label == "benign" for p in items], np.int64)
    ym = np.array([p.case.label == "malignant" for p in items], np.int64)
    return yb, ym


def _fit_lr(x: NDArray[Any], y: NDArray[Any], c: float) -> tuple[NDArray[Any], float]:
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit((x - mu) / sd, y)
    w = lr.coef_[0] / sd
    b = float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))
    return w, b


def _sig(z: NDArray[Any]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def hog_baseline(cfg: Config) -> dict[str, Any]:
    """Whole-image HOG (128 x 128) + logistic regression, C chosen on val."""
    import cv2
    from skimage.feature import hog
    from sklearn.linear_model import LogisticRegression

    root = cfg.data_dir / "mini-mias"
    cases = tdata.read_mias(root)

    def feat(c: tdata.MiasCase) -> NDArray[Any]:
        g = cv2.imread(str(root / c.path), cv2.IMREAD_GRAYSCALE)
        g = cv2.resize(g, (128, 128), interpolation=cv2.INTER_AREA)
        return np.asarray(hog(g, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2)))

    x = {s: np.stack([feat(c) for c in cases if c.split == s]) for s in ("train", "val", "test")}
    lab = {s: np.array([c.label for c in cases if c.split == s]) for s in ("train", "val", "test")}
    out: dict[str, Any] = {}
    for task, pos, keep in (
        ("normal_vs_abnormal", ("benign", "malignant"), ("normal", "benign", "malignant")),
        ("benign_vs_malignant", ("malignant",), ("benign", "malignant")),
    ):
        sel = {s: np.isin(lab[s], keep) for s in x}
        y = {s: np.isin(lab[s][sel[s]], pos).astype(int) for s in x}
        best = (-1.0, 1.0)
        for c in (0.001, 0.01, 0.1, 1.0, 10.0):
            m = LogisticRegression(C=c, max_iter=3000).fit(x["train"][sel["train"]], y["train"])
            a = tm.auc(y["val"], m.decision_function(x["val"][sel["val"]]))
            if a > best[0]:
                best = (a, c)
        m = LogisticRegression(C=best[1], max_iter=3000).fit(x["train"][sel["train"]], y["train"])
        s_test = m.decision_function(x["test"][sel["test"]])
        out[task] = {"C": best[1], "test_auc": tm.bootstrap_ci(tm.auc, y["test"], s_test)}
        out[task]["_scores"] = (y["test"].tolist(), s_test.tolist())
    return out


def localisation(items: list[tdata.Prepared], views: list[ViewOut]) -> dict[str, Any]:
    """Share of located test lesions whose heatmap peak (the lesion's own class, and either
    class) lies within the lesion's radius; chance = the lesion's share of the breast."""
    hits_own, hits_any, chance = [], [], []
    rows = []
    for p, v in zip(items, views, strict=True):
        if not p.lesions_work:
            continue
        for (lx, ly, lr, sev), les in zip(p.lesions_work, p.case.lesions, strict=True):
            own = v.heat_m if sev == 2 else v.heat_b
            both = np.maximum(v.heat_b, v.heat_m)
            res = []
            for hm in (own, both):
                r, c = np.unravel_index(int(np.argmax(hm)), hm.shape)
                ox, oy = p.state.to_original(float(c), float(r))
                res.append(bool((ox - les.x) ** 2 + (oy - les.y) ** 2 <= les.radius**2))
            hits_own.append(res[0])
            hits_any.append(res[1])
            yy, xx = np.nonzero(p.mask)
            inside = ((xx - lx) ** 2 + (yy - ly) ** 2 <= lr**2).sum()
            chance.append(float(inside) / max(len(yy), 1))
            rows.append({"path": p.case.path, "severity": les.severity, "hit_own": res[0]})
    n = len(hits_own)
    ones = np.ones(n, int)
    mean_fn = lambda y, s: float(np.mean(s))  # noqa: E731
    return {
        "n_lesions": n,
        "peak_in_lesion_own_class": tm.bootstrap_ci(mean_fn, ones, np.array(hits_own, float)),
        "peak_in_lesion_either_class": tm.bootstrap_ci(mean_fn, ones, np.array(hits_any, float)),
        "chance_rate": round(float(np.mean(chance)), 4) if chance else None,
        "per_lesion": rows,
    }


def step_view(cfg: Config) -> dict[str, Any]:
    from bc_service.train.nets import export_onnx, linear_sigmoid

    items = prepared(cfg)
    tr, va, te = by_split(items, "train"), by_split(items, "val"), by_split(items, "test")
    oof = _load_json(WORK / "oof_features.json")
    if oof is None:
        raise SystemExit("run the 'oof' step first")
    patch_onnx = MODELS / "mammo-patch" / "1" / "model.onnx"
    pred = _onnx_predictor(patch_onnx)
    vv = run_views(va, pred)
    vt = run_views(te, pred)
    xtr = np.array([oof[p.case.path] for p in tr], np.float64)
    xva = np.array([v.features for v in vv], np.float64)
    xte = np.array([v.features for v in vt], np.float64)
    ybt, ymt = _targets(tr)
    ybv, ymv = _targets(va)
    ybe, yme = _targets(te)
    ws, bs, chosen = [], [], {}
    for name, ytr_, yva_ in (("benign", ybt, ybv), ("malignant", ymt, ymv)):
        best = (-1.0, 1.0)
        for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            w, b = _fit_lr(xtr, ytr_, c)
            a = tm.auc(yva_, xva @ w + b)
            if a > best[0] + 1e-9:
                best = (a, c)
        w, b = _fit_lr(xtr, ytr_, best[1])
        ws.append(w)
        bs.append(b)
        chosen[name] = {"C": best[1], "val_auc": round(best[0], 4)}
    wmat = np.stack(ws, axis=1)
    bvec = np.array(bs)
    model = linear_sigmoid(wmat, bvec)
    folder = MODELS / "mammo-view" / "1"
    parity = export_onnx(model, folder / "model.onnx", "features", "probs")
    pv = _sig(xva @ wmat + bvec)
    pe = _sig(xte @ wmat + bvec)
    thr = {
        "benign": round(tm.youden_threshold(ybv, pv[:, 0]), 4),
        "malignant": round(tm.youden_threshold(ymv, pv[:, 1]), 4),
    }
    abn_e = ((ybe + yme) > 0).astype(int)
    abn_score = 1 - (1 - pe[:, 0]) * (1 - pe[:, 1])
    lesion_e = abn_e.astype(bool)
    bm_y = yme[lesion_e]
    bm_s = pe[lesion_e, 1] - pe[lesion_e, 0]
    # the raw heatmap statistic alone (no view model): the lesion map's maximum
    raw_abn = xte[:, VIEW_FEATURES.index("lesion_max")]
    base = hog_baseline(cfg)
    pred_lab = np.where(pe[:, 1] >= thr["malignant"], 2, np.where(pe[:, 0] >= thr["benign"], 1, 0))
    true_lab = np.where(yme == 1, 2, np.where(ybe == 1, 1, 0))
    res: dict[str, Any] = {
        "C": chosen,
        "parity_max_abs_diff": parity,
        "threshold": thr,
        "test": {
            "n_views": len(te),
            "auc_normal_vs_abnormal": tm.bootstrap_ci(tm.auc, abn_e, abn_score),
            "auc_benign_vs_malignant": tm.bootstrap_ci(tm.auc, bm_y, bm_s),
            "auc_malignant_vs_rest": tm.bootstrap_ci(tm.auc, yme, pe[:, 1]),
            "auc_benign_vs_rest": tm.bootstrap_ci(tm.auc, ybe, pe[:, 0]),
            "auc_normal_vs_abnormal_raw_heatmap_max": tm.bootstrap_ci(tm.auc, abn_e, raw_abn),
            "malignant_at_threshold": tm.binary_at(yme, pe[:, 1], thr["malignant"]),
            "benign_at_threshold": tm.binary_at(ybe, pe[:, 0], thr["benign"]),
            "label_confusion": tm.confusion(true_lab, pred_lab, 3),
        },
        "val": {
            "auc_normal_vs_abnormal": round(
                tm.auc(((ybv + ymv) > 0).astype(int), 1 - (1 - pv[:, 0]) * (1 - pv[:, 1])), 4
            ),
            "auc_malignant_vs_rest": round(tm.auc(ymv, pv[:, 1]), 4),
        },
        "baseline_hog_lr": {
            k: {kk: vv for kk, vv in v.items() if kk != "_scores"} for k, v in base.items()
        },
        "localisation": localisation(te, vt),
        "weights": {"W": wmat.round(5).tolist(), "b": bvec.round(5).tolist()},
    }
    curves = {
        "normal_vs_abnormal": {
            "heatmaps + view model": (abn_e, abn_score),
            "HOG + LR baseline": tuple(np.array(a) for a in base["normal_vs_abnormal"]["_scores"]),
        },
        "benign_vs_malignant": {
            "heatmaps + view model": (bm_y, bm_s),
            "HOG + LR baseline": tuple(np.array(a) for a in base["benign_vs_malignant"]["_scores"]),
        },
    }
    for task, cv in curves.items():
        tm.plot_rocs(cv, folder / f"roc_{task}.png", f"mini-mias test: {task.replace('_', ' ')}")  # type: ignore[arg-type]
    tm.plot_confusion(
        res["test"]["label_confusion"],
        PATCH_LABELS,
        folder / "confusion_test.png",
        "view label on test (thresholds from val)",
    )
    _save_json(WORK / "view.json", res)
    write_view_card(cfg, res)  # the card must exist before the repository can load the model
    res["timing"] = measure_timing(cfg, te)
    _save_json(WORK / "view.json", res)
    write_view_card(cfg, res)
    return res


def measure_timing(cfg: Config, te: list[tdata.Prepared], n: int = 12) -> dict[str, Any]:
    """Per-view time by stage through MammoPipeline with the committed models (this machine)."""
    from bc_service.pipeline import MammoPipeline, ViewInput
    from shared.imaging import decode_image
    from shared.model import ModelRepository

    repo = ModelRepository(MODELS, use_gpu=False)
    repo.load_all()
    pipe = MammoPipeline(repo)
    root = cfg.data_dir / "mini-mias"
    per: dict[str, list[float]] = {}
    totals = []
    for p in te[:n]:
        t0 = time.perf_counter()
        img = decode_image((root / p.case.path).read_bytes())
        dec = (time.perf_counter() - t0) * 1000
        r = pipe.run_view(ViewInput("view-0", img, None), lambda a, b: None)
        totals.append((time.perf_counter() - t0) * 1000)
        per.setdefault("file_decode", []).append(dec)
        for k, v in r.timings_ms.items():
            per.setdefault(k, []).append(v)
    return {
        "n_views": len(totals),
        "machine": f"{platform.processor() or platform.machine()}, {_cpus()} CPUs (shared)",
        "median_ms_by_stage": {k: round(float(np.median(v)), 1) for k, v in per.items()},
        "median_total_ms": round(float(np.median(totals)), 1),
        "note": "heatmap_png: encoding both RGBA overlay PNGs at the original size",
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


# --------------------------------------------------------------------------- gate


def step_gate(cfg: Config) -> dict[str, Any]:
    import keras

    from bc_service.train.nets import export_onnx, gate_model

    t0 = time.perf_counter()
    tr = tdata.gate_dataset(cfg.data_dir, "train", seed=cfg.seed, max_chest=cfg.max_chest)
    va = tdata.gate_dataset(cfg.data_dir, "val", seed=cfg.seed, max_chest=cfg.max_chest)
    te = tdata.gate_dataset(cfg.data_dir, "test", seed=cfg.seed, max_chest=cfg.max_chest)
    load_s = time.perf_counter() - t0
    model = gate_model(cfg.seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    pos = float(tr.y.mean())
    cw = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
    hist: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_w = 1e9, None
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.gate_epochs):
        idx = rng.permutation(len(tr.y))
        h = model.fit(tr.x[idx], tr.y[idx], batch_size=32, epochs=1, verbose=0, class_weight=cw)
        vl = float(model.evaluate(va.x, va.y, verbose=0))
        hist["loss"].append(float(h.history["loss"][0]))
        hist["val_loss"].append(vl)
        if vl < best:
            best, best_w = vl, model.get_weights()
    if best_w is not None:
        model.set_weights(best_w)
    train_s = time.perf_counter() - t0
    folder = MODELS / "mammo-gate" / "1"
    parity = export_onnx(model, folder / "model.onnx", "image", "p_mammogram")
    pv = model.predict(va.x, verbose=0)[:, 0]
    pt = model.predict(te.x, verbose=0)[:, 0]
    # Operating point chosen on val: Youden's J, capped at 0.5 (refusing a real mammogram
    # costs more than accepting a stray image, which the later stages still handle).
    thr = float(min(0.5, tm.youden_threshold(va.y.astype(int), pv)))
    per_source = {}
    for s in sorted(set(te.source)):
        sel = np.array([x == s for x in te.source])
        per_source[s] = {
            "n": int(sel.sum()),
            "accepted_as_mammogram": round(float((pt[sel] >= thr).mean()), 4),
        }
    res = {
        "train_seconds": round(train_s, 1),
        "data_load_seconds": round(load_s, 1),
        "parity_max_abs_diff": parity,
        "threshold": round(thr, 4),
        "counts": {
            s: {"mammograms": int(d.y.sum()), "others": int((1 - d.y).sum())}
            for s, d in (("train", tr), ("val", va), ("test", te))
        },
        "test": {
            "auc": tm.bootstrap_ci(tm.auc, te.y.astype(int), pt),
            "at_threshold": tm.binary_at(te.y.astype(int), pt, thr),
            "per_source": per_source,
        },
        "val_at_threshold": tm.binary_at(va.y.astype(int), pv, thr),
        "history": hist,
    }
    tm.plot_history(hist, folder / "training.png", "mammo-gate: loss")
    cm = tm.confusion(te.y.astype(int), (pt >= thr).astype(int), 2)
    tm.plot_confusion(cm, ["other", "mammogram"], folder / "confusion_test.png", "gate on test")
    tm.plot_rocs({"gate": (te.y.astype(int), pt)}, folder / "roc_test.png", "mammo-gate test ROC")
    _save_json(WORK / "gate.json", res)
    write_gate_card(res)
    return res


# --------------------------------------------------------------------------- cards


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    card["sha256"] = file_sha256(folder / "model.onnx")
    card["created"] = _now()
    _save_json(folder / "card.json", card)


def _ci(m: dict[str, Any]) -> str:
    return f"{m['value']:.3f} (95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f}, n={m['n']})"


COMMON_LIMITS = [
    "Trained on mini-mias only: 322 digitised FILM MLO mammograms (1990s, 200 um/px) from one "
    "source; no full-field digital mammography, no tomosynthesis.",
    "No CC views in the training data: CC views are accepted (orientation, crop and geometry "
    "apply to them) but the models never saw one; CC/MLO detection is a shape heuristic.",
    "Small test split (64 images, 25 located lesions): confidence intervals are wide.",
    "Screening aid for research, not a diagnostic device: a radiologist must read the images.",
]


def write_gate_card(res: dict[str, Any]) -> None:
    folder = MODELS / "mammo-gate" / "1"
    card = {
        "name": "mammo-gate",
        "version": "1",
        "task": "validity gate: is this image a mammogram? (binary)",
        "framework": "onnx (Keras 3 / TensorFlow 2.21 → tf2onnx, opset 13)",
        "inputs": [
            {
                "name": "image",
                "shape": ["N", GATE_SIZE, GATE_SIZE, 1],
                "dtype": "float32",
                "description": "whole image, 8-bit gray, squashed to 96x96, /255",
            }
        ],
        "outputs": [{"name": "p_mammogram", "shape": ["N", 1], "dtype": "float32"}],
        "labels": ["mammogram"],
        "preprocessing": {"version": "1", "fn": "bc_service.pipeline.features.gate_input"},
        "training_data": {
            "positives": "mini-mias MLO mammograms (train split, plus 2 augmented copies each: "
            "mirror, crop/zoom, rotation, gamma)",
            "negatives": "nih-cxr14 and kermany-pediatric chest X-rays (their own splits, up to "
            "350 each per split), scikit-image / scikit-learn sample photographs, pydicom's "
            "non-MG test DICOMs (CT, MR, US, ...), synthetic noise/gradients/shapes; the fixed "
            "sets split 60/20/20 by seeded shuffle",
            "splits": "train for fitting, val for the epoch and the threshold, test for metrics",
            "counts": res["counts"],
            "sources": SOURCES,
        },
        "metrics": {
            "test": res["test"],
            "val_at_threshold": res["val_at_threshold"],
            "onnx_parity_max_abs_diff": res["parity_max_abs_diff"],
            "train_seconds": res["train_seconds"],
        },
        "threshold": {
            "mammogram": {
                "value": res["threshold"],
                "how": "Youden J on val, capped at 0.5 (refusing a real mammogram costs more "
                "than accepting a stray image, which the later stages still handle)",
            }
        },
        "intended_use": "Refuse uploads that are not mammograms before the mammography pipeline.",
        "limitations": [
            *COMMON_LIMITS[:2],
            "Negatives cover chest X-rays, a few dozen photos, other DICOM modalities and "
            "synthetic images; other image kinds (e.g. other radiographs) were not tested.",
            "A DICOM's Modality tag is checked before the model (non-MG is refused outright).",
        ],
    }
    _write_card(folder, card)
    t = res["test"]
    lines = [
        "# mammo-gate v1 report",
        "",
        f"Test AUC {_ci(t['auc'])}. At the threshold {res['threshold']} (chosen on val): "
        f"sensitivity {t['at_threshold']['sensitivity']}, specificity "
        f"{t['at_threshold']['specificity']}.",
        "",
        "| test source | n | accepted as mammogram |",
        "|---|---|---|",
        *[f"| {k} | {v['n']} | {v['accepted_as_mammogram']} |" for k, v in t["per_source"].items()],
        "",
        f"Training took {res['train_seconds']} s on CPU; ONNX parity max |diff| "
        f"{res['parity_max_abs_diff']:.2e}.",
        "",
        "![loss](training.png) ![roc](roc_test.png) ![confusion](confusion_test.png)",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))


def write_patch_card(cfg: Config, res: dict[str, Any], acts: dict[str, Any] | None) -> None:
    folder = MODELS / "mammo-patch" / "1"
    card = {
        "name": "mammo-patch",
        "version": "1",
        "task": "patch classifier: normal tissue / benign lesion / malignant lesion",
        "framework": "onnx (Keras 3 / TensorFlow 2.21 → tf2onnx, opset 13)",
        "inputs": [
            {
                "name": "patches",
                "shape": ["N", PATCH_SIZE, PATCH_SIZE, 1],
                "dtype": "float32",
                "description": "CLAHE-enhanced working image /255; "
                f"working image = breast crop resized to height {WORK_HEIGHT}, chest wall left",
            }
        ],
        "outputs": [{"name": "probs", "shape": ["N", 3], "dtype": "float32"}],
        "labels": PATCH_LABELS,
        "preprocessing": {
            "version": "1",
            "stages": ["decode", "orientation", "crop", "enhance"],
            "patch": PATCH_SIZE,
            "stride": STRIDE,
            "clahe": {"clip_limit": 2.0, "tiles": 8},
        },
        "training_data": {
            "dataset": "mini-mias train split (210 images) only",
            "lesion_patches": f"{cfg.per_lesion} per located lesion per epoch, centre jittered "
            "inside the lesion (lesions.csv centre/radius), flips, quarter turns, gain/bias",
            "normal_patches": f"{cfg.normal_per_image} per image per epoch from breast pixels "
            "away from every lesion, half uniform, half weighted by intensity cubed (dense "
            "tissue as hard negatives); images with unlocated spread calcifications excluded",
            "epochs": cfg.patch_epochs,
            "selection": "epoch with the best val macro one-vs-rest AUC",
            "optimizer": "Adam lr 1e-3, categorical cross-entropy, class-balanced weights",
            "sources": {"mini-mias": SOURCES["mini-mias"]},
        },
        "metrics": {
            "test": res["test"],
            "val": res["val"],
            "onnx_parity_max_abs_diff": res["parity_max_abs_diff"],
            "train_seconds": res["train_seconds"],
            "parameters": res["params"],
            "note": "patch-level; patches of one lesion are correlated, so patch CIs are "
            "optimistic: see mammo-view for image-level figures",
            "output_activation_comparison": {
                k: {kk: vv for kk, vv in v.items() if kk != "history"}
                for k, v in (acts or {}).get("rows", {}).items()
            },
        },
        "threshold": None,
        "intended_use": "Inside the mammography pipeline: sliding-window heatmaps over the "
        "breast, summarised by mammo-view.",
        "limitations": [
            *COMMON_LIMITS,
            "Calcification clusters without coordinates give no patches; tiny calcifications "
            "are close to the working resolution (~400 um/px).",
        ],
    }
    _write_card(folder, card)
    t = res["test"]
    tm.plot_history(res["history"], folder / "training.png", "mammo-patch training")
    tm.plot_confusion(
        t["confusion"], PATCH_LABELS, folder / "confusion_test.png", "patches on test"
    )
    lines = [
        "# mammo-patch v1 report",
        "",
        f"Compact CNN, {res['params']} parameters, trained in {res['train_seconds']} s on CPU. "
        f"ONNX parity max |diff| {res['parity_max_abs_diff']:.2e}.",
        "",
        f"Test patches ({t['n_patches']}: {t['per_class']}): accuracy {_ci(t['accuracy'])}; "
        f"normal vs lesion AUC {_ci(t['auc_normal_vs_lesion'])}; benign vs malignant AUC "
        f"{_ci(t['auc_benign_vs_malignant'])}.",
        "",
        "![training](training.png) ![confusion](confusion_test.png)",
        "",
    ]
    if acts:
        lines += [
            "## Output activation (the original report's Tables 6-8)",
            "",
            f"Same network, data and budget ({acts['epochs']} epochs), categorical "
            "cross-entropy, only the output layer's activation changed. The original report "
            "claimed 94.51% (ReLU), 89.63% (Softmax), 85.37% (Softplus) on INbreast; its TB "
            "model's ReLU head learned nothing (50%).",
            "",
            "| output | val accuracy | test accuracy (95% CI) | test macro AUC | all-zero out |",
            "|---|---|---|---|---|",
        ]
        for k, v in acts["rows"].items():
            ta = v["test_accuracy"]
            lines.append(
                f"| {k} | {v['val_accuracy']:.3f} | {ta['value']:.3f} ({ta['ci_low']:.3f}-"
                f"{ta['ci_high']:.3f}) | {v['test_macro_auc']:.3f} | "
                f"{v['dead_outputs_share']:.2f} |"
            )
        majority = t["per_class"]["normal"] / max(t["n_patches"], 1)
        lines += [
            "",
            f"Accuracy alone misleads here: always answering 'normal' scores {majority:.3f} on "
            "these test patches. A head whose outputs are all zero (the ReLU column's last "
            "figure) has learned nothing - its 'accuracy' is that majority share and its AUC "
            "0.5, as the original report's TB ReLU head (50%). Softmax and Softplus both learn; "
            "the served model uses Softmax (probabilities that sum to one).",
            "",
        ]
    (folder / "report.md").write_text("\n".join(lines))


def write_view_card(cfg: Config, res: dict[str, Any]) -> None:
    folder = MODELS / "mammo-view" / "1"
    t = res["test"]
    card = {
        "name": "mammo-view",
        "version": "1",
        "task": "per-view benign and malignant probabilities from the patch heatmaps",
        "framework": "onnx (Keras 3 Dense+sigmoid holding scikit-learn logistic regression "
        "weights → tf2onnx, opset 13)",
        "inputs": [
            {
                "name": "features",
                "shape": ["N", len(VIEW_FEATURES)],
                "dtype": "float32",
                "description": "statistics of the patch probabilities inside the optimal "
                "window: " + ", ".join(VIEW_FEATURES),
            }
        ],
        "outputs": [
            {
                "name": "probs",
                "shape": ["N", 2],
                "dtype": "float32",
                "description": "[P(benign finding), P(malignant finding)]",
            }
        ],
        "labels": ["benign", "malignant"],
        "preprocessing": {"version": "1", "fn": "bc_service.pipeline.stages.classifier_features"},
        "training_data": {
            "dataset": "mini-mias train split (210 images): out-of-fold heatmap features from "
            f"{cfg.folds} patch models trained on the other folds (grouped by woman), so the "
            "view model never sees heatmaps of images their patch model trained on",
            "regularisation": res["C"],
            "sources": {"mini-mias": SOURCES["mini-mias"]},
            "what_and_why": "Two class-balanced logistic regressions (benign vs rest, malignant "
            f"vs rest) on {len(VIEW_FEATURES)} heatmap statistics, C chosen on val. A CNN on "
            "image + heatmaps (NYU) "
            "was not trained: 210 training images are far too few for it.",
        },
        "metrics": {
            "test": t,
            "val": res["val"],
            "baseline_hog_lr_test": res["baseline_hog_lr"],
            "localisation_test": {
                k: v for k, v in res["localisation"].items() if k != "per_lesion"
            },
            "onnx_parity_max_abs_diff": res["parity_max_abs_diff"],
            "timing_per_view": res.get("timing"),
        },
        "threshold": {
            "benign": {"value": res["threshold"]["benign"], "how": "Youden J on val"},
            "malignant": {"value": res["threshold"]["malignant"], "how": "Youden J on val"},
            "label_rule": "malignant if P(malignant) >= its threshold, else benign if "
            "P(benign) >= its threshold, else normal; per breast the mean of its views, per "
            "exam the worse breast",
        },
        "intended_use": "Research screening aid: flags views/breasts for a radiologist's review.",
        "limitations": [
            *COMMON_LIMITS,
            "Thresholds chosen on 48 val images (8 malignant): unstable operating points.",
            "No image-level CNN: the view decision uses heatmap statistics only.",
        ],
    }
    _write_card(folder, card)
    b = res["baseline_hog_lr"]
    loc = res["localisation"]
    lines = [
        "# mammo-view v1 report (the pipeline's image-level results)",
        "",
        "mini-mias test split (64 MLO views: 40 normal, 14 benign, 10 malignant).",
        "",
        "| task (test) | heatmaps + view model | HOG + LR whole-image baseline |",
        "|---|---|---|",
        f"| normal vs abnormal AUC | {_ci(t['auc_normal_vs_abnormal'])} | "
        f"{_ci(b['normal_vs_abnormal']['test_auc'])} |",
        f"| benign vs malignant AUC (abnormal views) | {_ci(t['auc_benign_vs_malignant'])} | "
        f"{_ci(b['benign_vs_malignant']['test_auc'])} |",
        f"| malignant vs rest AUC | {_ci(t['auc_malignant_vs_rest'])} | |",
        f"| normal vs abnormal, raw max of the lesion heatmap (no view model) | "
        f"{_ci(t['auc_normal_vs_abnormal_raw_heatmap_max'])} | |",
        "",
        f"Localisation: {loc['n_lesions']} located test lesions; the peak of the lesion's own "
        f"class heatmap lies within the lesion radius for {_ci(loc['peak_in_lesion_own_class'])}"
        f"; either class: {_ci(loc['peak_in_lesion_either_class'])}; a random breast pixel "
        f"would hit {loc['chance_rate']}.",
        "",
        f"Thresholds (Youden on val): {res['threshold']}. Malignant at threshold on test: "
        f"{t['malignant_at_threshold']}.",
        "",
        "![roc normal vs abnormal](roc_normal_vs_abnormal.png) "
        "![roc benign vs malignant](roc_benign_vs_malignant.png) "
        "![confusion](confusion_test.png)",
        "",
    ]
    if res.get("timing"):
        tm = res["timing"]
        lines += [
            f"## Time per view on this machine ({tm['machine']}, median of {tm['n_views']})",
            "",
            "| stage | ms |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in tm["median_ms_by_stage"].items()],
            f"| total | {tm['median_total_ms']} |",
            "",
            tm["note"],
            "",
        ]
    (folder / "report.md").write_text("\n".join(lines))


def run(step: str, cfg: Config | None = None) -> None:
    cfg = cfg or Config(data_dir=default_data_dir())
    if not (cfg.data_dir / "mini-mias" / "labels.csv").exists():
        raise SystemExit(f"mini-mias not found under {cfg.data_dir}")
    steps = {
        "patch": step_patch,
        "gate": step_gate,
        "oof": step_oof,
        "view": step_view,
        "activations": step_activations,
    }
    order = list(steps) if step == "all" else [step]
    timings = _load_json(WORK / "timings.json") or {}
    for name in order:
        t0 = time.perf_counter()
        log.info("step %s ...", name)
        steps[name](cfg)
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("step %s done in %.1f s", name, timings[name])
        _save_json(WORK / "timings.json", timings)
