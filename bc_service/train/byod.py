"""Bring your own data: train the mammography patch and view models on another source
(CBIS-DDSM, INbreast: :mod:`bc_service.train.sources`) and evaluate them on its test split,
in one command: ``python -m bc_service.train --source cbis-ddsm --data DIR``.

The same code as the mini-mias training: every image through the serving pipeline's
preprocessing stages (decode → orientation → crop → enhance), patches and the patch model of
:mod:`bc_service.train.patch`, heatmaps and view features of :mod:`bc_service.train.heatmaps`.
The view model's training features are out-of-fold (folds grouped by woman), its
regularisation and operating point chosen on val, its figures measured once on test with
95% bootstrap intervals. Everything goes to ``--out`` (default ``var/mammo-train/<source>/``):
the records as read (``records.csv``), both ONNX models, ``report.json`` and ``report.md``.
The committed models are not touched: publishing is a separate, reviewed step.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline.features import VIEW_FEATURES
from bc_service.pipeline.stages import MammoState, preprocess_stages
from bc_service.train import data as tdata
from bc_service.train import metrics as tm
from bc_service.train.sources import read_source
from bc_service.train.sources.records import LayoutError, SourceCase
from bc_service.train.workspace import WORK, Config, save_json
from shared.imaging import DecodedImage, ImageLimits, decode_image
from shared.train.evaluation import Estimate
from shared.transforms import Compose

log = logging.getLogger("irmi.bc.train")

# Training reads full-field files of any size (a CBIS-DDSM scan is up to ~70 MB).
TRAIN_LIMITS = ImageLimits(max_bytes=1 << 30, max_pixels=200_000_000, max_side=20_000)
C_GRID = (0.01, 0.1, 1.0, 10.0)


def default_out(source: str) -> Path:
    return WORK / source


def prepare_case(root: Path, case: SourceCase) -> tdata.Prepared:
    """A record through decode → orientation → crop → enhance (original pixels dropped)."""
    img = decode_image((root / case.path).read_bytes(), TRAIN_LIMITS)
    state: MammoState = Compose[MammoState](preprocess_stages())(MammoState(image=img))
    assert state.enhanced is not None and state.work_mask is not None
    lesions = []
    for les in case.lesions:
        wx, wy = state.to_work(les.x, les.y)
        lesions.append((wx, wy, les.radius * state.scale, tdata.LABELS.index(les.severity)))
    state.gray8 = state.mask = None
    state.image = DecodedImage(np.zeros((1, 1), np.uint8), "png", 8, (0.0, 255.0))
    return tdata.Prepared(case, state.enhanced, state.work_mask, lesions, state)


RECORD_COLUMNS = (
    "path", "patient", "laterality", "view", "label", "split", "density", "lesions", "spread",
    "findings",
)  # fmt: skip


def write_records(cases: list[SourceCase], path: Path) -> None:
    """The records as read, one row per view: what a reader checks the mapping against."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(RECORD_COLUMNS)
        for c in cases:
            lesions = ";".join(f"{le.abnormality}@{le.x},{le.y},r{le.radius}" for le in c.lesions)
            row = (c.path, c.patient, c.laterality, c.view, c.label, c.split, c.density)
            w.writerow([*row, lesions, int(c.spread), ";".join(c.findings)])


def describe(cases: list[SourceCase]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        mine = [c for c in cases if c.split == split]
        out[split] = {
            "views": len(mine),
            "women": len({c.patient for c in mine}),
            **{label: sum(c.label == label for c in mine) for label in tdata.LABELS},
            "located_lesions": sum(len(c.lesions) for c in mine),
        }
    return out


def _targets(items: list[tdata.Prepared]) -> dict[str, NDArray[np.int64]]:
    labels = np.array([p.case.label for p in items])
    return {
        "abnormal": (labels != "normal").astype(np.int64),
        "malignant": (labels == "malignant").astype(np.int64),
    }


def _fit_logistic(x: NDArray[Any], y: NDArray[Any], c: float) -> tuple[NDArray[Any], float]:
    """Class-balanced logistic regression on standardised features, as (w, b) on the raw
    features; a constant target gives w = 0 and the log-odds of its rate."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        rate = float(np.clip(np.mean(y), 1e-3, 1 - 1e-3)) if len(y) else 0.5
        return np.zeros(x.shape[1]), float(np.log(rate / (1 - rate)))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit((x - mu) / sd, y)
    w = lr.coef_[0] / sd
    return w, float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))


def _auc_ci(y: NDArray[Any], s: NDArray[Any], n_boot: int) -> Estimate | None:
    """AUC with its CI, or None where the split lacks one of the two classes."""
    if len(np.unique(y)) < 2:
        return None
    return tm.bootstrap_ci(tm.auc, y, s, n=n_boot)


def oof_features(cfg: Config, items: list[tdata.Prepared]) -> NDArray[np.float64]:
    """View features of every train item from a patch model that never saw its woman."""
    from bc_service.train.heatmaps import keras_predictor, run_views
    from bc_service.train.patch import fit_patch_model

    women = sorted({p.case.patient for p in items if isinstance(p.case, SourceCase)})
    rng = np.random.default_rng(cfg.seed)
    rng.shuffle(women)
    folds = max(2, min(cfg.folds, len(women)))
    fold_of = {w: i % folds for i, w in enumerate(women)}
    out = np.zeros((len(items), len(VIEW_FEATURES)))
    for fold in range(folds):
        held = [i for i, p in enumerate(items) if fold_of[_patient(p)] == fold]
        fit_on = [p for p in items if fold_of[_patient(p)] != fold]
        model, _ = fit_patch_model(cfg, fit_on, None, cfg.fold_epochs, seed=100 + fold)
        views = run_views([items[i] for i in held], keras_predictor(model))
        for i, v in zip(held, views, strict=True):
            out[i] = v.features
        log.info("fold %d of %d: %d views held out", fold + 1, folds, len(held))
    return out


def _patient(p: tdata.Prepared) -> str:
    case = p.case
    return case.patient if isinstance(case, SourceCase) else case.path


def run(
    source: str, root: Path, cfg: Config, out: Path | None = None, n_boot: int = tm.N_BOOT
) -> dict[str, Any]:
    """Read ``root`` as ``source``, train on its train split, choose on val, report on test
    (intervals from ``n_boot`` class-stratified resamples)."""
    started = time.perf_counter()
    out = out or default_out(source)
    cases = read_source(source, root, seed=cfg.seed)  # a wrong layout fails here, at once
    write_records(cases, out / "records.csv")
    counts = describe(cases)
    log.info("%s: %s", source, counts)
    for split in ("train", "test"):
        if counts[split]["views"] == 0:
            raise LayoutError(f"{source} at {root}: no view in the {split} split.")
    from bc_service.train.heatmaps import keras_predictor, localisation, run_views
    from bc_service.train.nets import export_onnx, linear_sigmoid
    from bc_service.train.patch import fit_patch_model, fixed_patches, to_probabilities

    limit_threads()
    items = [prepare_case(root, c) for c in cases]
    train, val, test = (tdata.by_split(items, s) for s in ("train", "val", "test"))
    val_patches = fixed_patches(val, 1) if val else None
    model, history = fit_patch_model(cfg, train, val_patches, cfg.patch_epochs, seed=cfg.seed)
    x_train = oof_features(cfg, train)
    predictor = keras_predictor(model)
    x_val = np.array([v.features for v in run_views(val, predictor)]).reshape(-1, x_train.shape[1])
    test_views = run_views(test, predictor)
    x_test = np.array([v.features for v in test_views]).reshape(-1, x_train.shape[1])
    y_train, y_val, y_test = _targets(train), _targets(val), _targets(test)
    weights: list[NDArray[Any]] = []
    biases: list[float] = []
    chosen: dict[str, Any] = {}
    thresholds: dict[str, float | None] = {}
    figures: dict[str, Any] = {}
    for task in ("abnormal", "malignant"):
        trainable = len(np.unique(y_train[task])) == 2
        choosable = trainable and len(np.unique(y_val[task])) == 2
        best_auc, best_c = float("nan"), 1.0
        for c in C_GRID if choosable else ():
            w, b = _fit_logistic(x_train, y_train[task], c)
            val_auc = tm.auc(y_val[task], x_val @ w + b)
            if np.isnan(best_auc) or val_auc > best_auc + 1e-9:
                best_auc, best_c = val_auc, c
        w, b = _fit_logistic(x_train, y_train[task], best_c)
        weights.append(w)
        biases.append(b)
        p_val = 1 / (1 + np.exp(-(x_val @ w + b)))
        p_test = 1 / (1 + np.exp(-(x_test @ w + b)))
        thr = tm.youden_threshold(y_val[task], p_val) if choosable else None
        chosen[task] = {
            "C": best_c if choosable else None,
            "val_auc": round(best_auc, 4) if choosable else None,
            "note": None
            if trainable
            else "not trainable here: every train view has the same answer (CBIS-DDSM has no "
            "normal views); the output is that constant",
        }
        thresholds[task] = round(float(thr), 4) if thr is not None else None
        figures[task] = {
            "auc": _auc_ci(y_test[task], p_test, n_boot) if trainable else None,
            "at_threshold": tm.binary_at(y_test[task], p_test, thr)
            if thr is not None and len(np.unique(y_test[task])) == 2
            else None,
        }
    lesion = y_test["abnormal"].astype(bool)
    malignancy = x_test[lesion] @ weights[1] + biases[1]
    figures["benign_vs_malignant_auc"] = _auc_ci(y_test["malignant"][lesion], malignancy, n_boot)
    out.mkdir(parents=True, exist_ok=True)
    parity = {
        "patch": export_onnx(model, out / "mammo-patch" / "model.onnx", "patches", "probs"),
        "view": export_onnx(
            linear_sigmoid(np.stack(weights, axis=1), np.array(biases)),
            out / "mammo-view" / "model.onnx",
            "features",
            "probs",
        ),
    }
    x_patch, y_patch = fixed_patches(test, 2)
    p_patch = to_probabilities(model.predict(x_patch, verbose=0))
    lesion_patch = y_patch > 0
    report: dict[str, Any] = {
        "source": source,
        "data": str(root),
        "counts": counts,
        "patch_model": {
            "history": history,
            "test_patches": {k: int((y_patch == i).sum()) for i, k in enumerate(tdata.LABELS)},
            "test_auc_normal_vs_lesion": _auc_ci(
                lesion_patch.astype(np.int64), 1 - p_patch[:, 0], n_boot
            ),
            "test_auc_benign_vs_malignant": _auc_ci(
                (y_patch[lesion_patch] == 2).astype(np.int64),
                p_patch[lesion_patch, 2] / (p_patch[lesion_patch, 1:].sum(axis=1) + 1e-9),
                n_boot,
            ),
        },
        "view_model": {
            "outputs": ["P(abnormal)", "P(malignant)"],
            "chosen_on_val": chosen,
            "threshold_from_val": thresholds,
            "test": figures,
        },
        "localisation": localisation(test, test_views)
        if any(p.lesions_work for p in test)
        else None,
        "lesions_by_class": _lesion_counts(cases),
        "onnx_parity_max_abs_diff": parity,
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_json(out / "report.json", report)
    (out / "report.md").write_text(render_report(report))
    log.info("%s: report in %s", source, out)
    return report


def limit_threads(n: int = 2) -> None:
    """TensorFlow on ``n`` threads (the training machines are shared)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised
        pass


def _lesion_counts(cases: list[SourceCase]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        for le in c.lesions:
            row = out.setdefault(le.abnormality, {"train": 0, "val": 0, "test": 0})
            row[c.split] += 1
    return dict(sorted(out.items()))


def _fmt(est: Any) -> str:
    if est is None:
        return "n/a (not trainable on this set, or the test split lacks one of the classes)"
    return f"{est['value']:.3f} (95% CI {est['ci_low']:.3f}-{est['ci_high']:.3f}, n={est['n']})"


def render_report(r: dict[str, Any]) -> str:
    lines = [
        f"# Mammography models trained on {r['source']}",
        "",
        f"Data: `{r['data']}`. Trained on train, chosen on val, measured once on test.",
        "",
        "| split | views | women | normal | benign | malignant | located lesions |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, c in r["counts"].items():
        lines.append(
            f"| {split} | {c['views']} | {c['women']} | {c['normal']} | {c['benign']} | "
            f"{c['malignant']} | {c['located_lesions']} |"
        )
    t = r["view_model"]["test"]
    lines += [
        "",
        "## View model on test",
        "",
        f"- normal vs abnormal AUC: {_fmt(t['abnormal']['auc'])}",
        f"- malignant vs rest AUC: {_fmt(t['malignant']['auc'])}",
        f"- benign vs malignant AUC (abnormal views): {_fmt(t['benign_vs_malignant_auc'])}",
        f"- thresholds (Youden on val): {r['view_model']['threshold_from_val']}",
    ]
    loc = r["localisation"]
    if loc is not None:
        lines += [
            f"- heatmap peak inside the lesion: {_fmt(loc['peak_in_lesion_either_class'])}, "
            f"chance {loc['chance_rate']}",
        ]
    lines += [
        "",
        "Lesions per class (train/val/test): "
        + ", ".join(
            f"{k} {v['train']}/{v['val']}/{v['test']}" for k, v in r["lesions_by_class"].items()
        ),
        "",
    ]
    return "\n".join(lines)
