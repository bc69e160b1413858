"""mammo-view/2 and mammo-density/1: the ONNX export (Keras Dense holding the scikit-learn
weights → tf2onnx), ``card.json`` with its ``operating_point`` chosen out-of-fold, and
``report.md`` with the old model, the new one and the HOG baseline on every row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bc_service.pipeline import evidence as ev
from bc_service.pipeline.cards import served_preprocessing
from bc_service.train.publish import COMMON_LIMITS, SOURCES, _ci, _write_typed
from bc_service.train.workspace import MODELS
from shared.train.card_writer import card_tensor, operating_point_section
from shared.train.plots import plot_confusion, plot_reliability, plot_roc

ONNX_FRAMEWORK = (
    "onnx (Keras 3 Dense holding scikit-learn logistic regression weights → tf2onnx, opset 13)"
)
CALIBRATION = (
    "Platt scaling fitted on the pooled out-of-fold predictions of mini-MIAS, where 115 of 322 "
    "breasts (36%) are abnormal: the score is 100 x P(abnormal) at THAT prevalence. Screening "
    "populations have well under 1% cancer, so it is a relative suspicion score, never a risk, "
    "and never shown to a patient."
)
CV = (
    "patient-level 5-fold cross-validation over all 161 women (322 MLO images), both breasts of "
    "a woman in one fold, folds stratified by label (StratifiedGroupKFold, seed 0); out-of-fold "
    "predictions pooled"
)


def _old_view_card() -> dict[str, Any]:
    return dict(json.loads((MODELS / "mammo-view" / "1" / "card.json").read_text()))


def _measured_on(what: str) -> str:
    return (
        f"pooled out-of-fold predictions, {CV}; {what}; threshold by Youden's J on those "
        "predictions; 95% percentile bootstrap (2000 resamples)"
    )


def export_screen(res: dict[str, Any], folder: Path) -> float:
    from bc_service.train.nets import export_onnx, linear_sigmoid

    w = np.asarray(res["weights"]["W"], np.float64)
    b = np.asarray(res["weights"]["b"], np.float64)
    return export_onnx(linear_sigmoid(w, b), folder / "model.onnx", "features", "probs")


def export_density(res: dict[str, Any], folder: Path) -> float:
    from bc_service.train.nets import export_onnx, linear_softmax

    w = np.asarray(res["weights"]["W"], np.float64)
    b = np.asarray(res["weights"]["b"], np.float64)
    return export_onnx(linear_softmax(w, b), folder / "model.onnx", "features", "probs")


def write_screen(res: dict[str, Any], parity: float, folder: Path) -> None:
    oof, test = res["oof"], res["test"]
    old = _old_view_card()["metrics"]["test"]
    pts = oof["operating_point"]
    mal = oof["auc_benign_vs_malignant"]["model"]
    card: dict[str, Any] = {
        "name": "mammo-view",
        "version": "2",
        "task": "per-breast suspicion of an abnormality needing work-up (mini-MIAS: benign or "
        "malignant lesion), from multi-scale filter statistics of the breast and of its "
        "difference to the other breast of the same woman and view",
        "framework": ONNX_FRAMEWORK,
        "inputs": [
            card_tensor(
                "features",
                ["N", len(ev.VIEW_FEATURES_V2)],
                "bc_service.pipeline.evidence.VIEW_FEATURES_V2: " + ", ".join(ev.VIEW_FEATURES_V2),
            )
        ],
        "outputs": [
            card_tensor(
                "probs",
                ["N", 3],
                "[P(abnormal) with the other breast (calibrated), P(abnormal) from this breast "
                "alone (calibrated; no weight on the bilateral inputs), P(malignant | a lesion) "
                "(uncalibrated; served only while its OOF AUC's CI lower bound >= 0.70)]",
            )
        ],
        "labels": ["abnormal_bilateral", "abnormal_unilateral", "malignant_if_lesion"],
        "preprocessing": served_preprocessing("mammo-view"),
        "training_data": {
            "dataset": f"mini-MIAS, all 322 images: recipe chosen by {CV}; served heads refitted "
            "on all 322 with the chosen C and the out-of-fold Platt map folded in",
            "regularisation": res["C"],
            "sources": {"mini-mias": SOURCES["mini-mias"]},
            "what_and_why": "Class-balanced L2 logistic regressions. The bilateral head reads "
            "the breast's own statistics, their difference to the other breast and a "
            "smoothed-brightness comparison of the two laid over each other; the unilateral "
            "head (exams with one breast, one-view predictions) reads the own statistics only. "
            "C chosen by OOF AUC (search in metrics.oof_search).",
        },
        "calibration": {
            "method": CALIBRATION,
            "prevalence_abnormal": res["prevalence_abnormal"],
            "platt": res["calibration"],
            "ece_oof": oof["ece"],
        },
        "metrics": {
            "split": "oof",
            "oof": {
                "auc_normal_vs_abnormal": oof["auc_normal_vs_abnormal"]["bilateral"],
                "auc_normal_vs_abnormal_unilateral": oof["auc_normal_vs_abnormal"]["unilateral"],
                "auc_normal_vs_abnormal_hog_baseline": oof["auc_normal_vs_abnormal"]["hog"],
                "auc_benign_vs_malignant": mal,
                "auc_benign_vs_malignant_hog_baseline": oof["auc_benign_vs_malignant"]["hog"],
                "exam_auc_normal_vs_abnormal": oof["exam_auc_normal_vs_abnormal"],
            },
            "oof_details": {
                "operating_points": pts,
                "exam_at_bilateral_point": oof["exam_at_bilateral_point"],
                "per_lesion_class_at_point": oof["per_lesion_class_at_point"],
                "localisation_bilateral_difference": res["localisation"],
                "detector_search": res["detector_search"],
                "search": res["search"],
            },
            "test": {
                "auc_normal_vs_abnormal": test["auc_normal_vs_abnormal_bilateral"],
                "auc_normal_vs_abnormal_unilateral": test["auc_normal_vs_abnormal_unilateral"],
                "auc_normal_vs_abnormal_hog_baseline": test["auc_normal_vs_abnormal_hog"],
                "auc_benign_vs_malignant": test["auc_benign_vs_malignant_model"],
                "auc_benign_vs_malignant_hog_baseline": test["auc_benign_vs_malignant_hog"],
                "model_1_auc_normal_vs_abnormal": old["auc_normal_vs_abnormal"],
                "model_1_auc_benign_vs_malignant": old["auc_benign_vs_malignant"],
            },
            "test_details": {
                "how": "the chosen recipes fitted on train + val, scored once on the fixed "
                "64-image test split",
            },
            "onnx_parity_max_abs_diff": parity,
        },
        "threshold": {
            "abnormal_bilateral": {
                "value": pts["bilateral"]["threshold"],
                "how": "Youden J on OOF",
            },
            "abnormal_unilateral": {
                "value": pts["unilateral"]["threshold"],
                "how": "Youden J on OOF",
            },
        },
        "operating_point": operating_point_section(
            pts["bilateral"]["threshold"],
            pts["bilateral"],
            _measured_on("per breast, read with the other breast of the same woman"),
        ),
        "operating_point_unilateral": operating_point_section(
            pts["unilateral"]["threshold"],
            pts["unilateral"],
            _measured_on(
                "per breast, read from that breast alone (the fallback without the other breast)"
            ),
        ),
        "malignancy_estimate": {
            "shown": res["malignancy_shown"],
            "oof_auc": _typed(mal),
            "rule": "shown to doctors, for flagged breasts only, while the OOF AUC's 95% CI "
            "lower bound is at least 0.70",
            "why_not": None
            if res["malignancy_shown"]
            else f"benign vs malignant out-of-fold AUC {mal['value']:.2f} (95% CI "
            f"{mal['ci_low']:.2f}-{mal['ci_high']:.2f}) does not clear 0.70: no estimate is given",
        },
        "intended_use": "Research screening aid: flags breasts for a radiologist's review; "
        "never a diagnosis, never a risk.",
        "limitations": [
            *COMMON_LIMITS,
            "Far from the goal: normal vs abnormal OOF AUC "
            f"{oof['auc_normal_vs_abnormal']['bilateral']['value']:.2f} per breast; per exam (the "
            f"worse breast) {oof['exam_auc_normal_vs_abnormal']['value']:.2f}.",
            "Calibrated at mini-MIAS's 36% abnormal prevalence: a relative score, never a risk.",
            "The score map shown beside the score is still mammo-patch/1's: model 2 has no map.",
        ],
    }
    card["metrics"]["test"] = {k: _typed(v) for k, v in card["metrics"]["test"].items()}
    _write_typed(folder, card)
    preds = res["oof_predictions"]
    y = np.asarray(preds["abnormal"])
    plot_roc(
        {
            "bilateral (v2)": (y, np.asarray(preds["bilateral"])),
            "unilateral (v2 fallback)": (y, np.asarray(preds["unilateral"])),
            "HOG + LR baseline": (y, np.asarray(preds["hog"])),
        },
        folder / "roc_oof_normal_vs_abnormal.png",
        "mini-MIAS out-of-fold: normal vs abnormal (per breast)",
    )
    plot_reliability(
        {
            "bilateral": (y, np.asarray(preds["bilateral"])),
            "unilateral": (y, np.asarray(preds["unilateral"])),
        },
        folder / "reliability_oof.png",
        "mini-MIAS out-of-fold calibration (Platt)",
        positive="abnormal",
    )
    (folder / "report.md").write_text(_screen_report(res, old))


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _typed(v: dict[str, Any]) -> dict[str, Any]:
    out = dict(v)
    if "ci_low" in out:
        out["ci95"] = [out.pop("ci_low"), out.pop("ci_high")]
    return out


def _r(m: dict[str, Any]) -> str:
    lo, hi = m.get("ci95") or (m.get("ci_low"), m.get("ci_high"))
    return f"{m['value']:.3f} ({lo:.3f}-{hi:.3f})"


def _screen_report(res: dict[str, Any], old: dict[str, Any]) -> str:
    oof, test = res["oof"], res["test"]
    a, bm = oof["auc_normal_vs_abnormal"], oof["auc_benign_vs_malignant"]
    pts = oof["operating_point"]
    exam = oof["exam_at_bilateral_point"]
    loc = res["localisation"]
    tried = res["detector_search"].values()
    gain = max(v["oof_auc_with_view_statistics"]["value"] for v in tried) - a["bilateral"]["value"]
    lines = [
        "# mammo-view v2 report",
        "",
        f"{CV}. AUC with 95% bootstrap CI. Goals (issue 14): normal vs abnormal >= 0.75 and "
        "benign vs malignant >= 0.80 out-of-fold, CI lower bounds > 0.60: **not reached**.",
        "",
        _row(
            "figure",
            "model 1 (mammo-view/1)",
            "model 2 bilateral",
            "model 2 unilateral",
            "HOG + LR, same folds",
        ),
        "|---|---|---|---|---|",
        _row(
            "OOF normal vs abnormal, per breast (n=322)",
            "not measurable (trained on the fixed train split)",
            _r(a["bilateral"]),
            _r(a["unilateral"]),
            _r(a["hog"]),
        ),
        _row(
            "OOF benign vs malignant (n=115 abnormal)",
            "not measurable",
            _r(bm["model"]) + " (own statistics)",
            "same",
            _r(bm["hog"]),
        ),
        _row(
            "OOF normal vs abnormal, per woman (worse breast, n=161)",
            "-",
            _r(oof["exam_auc_normal_vs_abnormal"]),
            "",
            "",
        ),
        _row(
            "fixed test split, normal vs abnormal (n=64)",
            _r(old["auc_normal_vs_abnormal"]),
            _r(test["auc_normal_vs_abnormal_bilateral"]),
            _r(test["auc_normal_vs_abnormal_unilateral"]),
            _r(test["auc_normal_vs_abnormal_hog"]),
        ),
        _row(
            "fixed test split, benign vs malignant (n=24)",
            _r(old["auc_benign_vs_malignant"]),
            _r(test["auc_benign_vs_malignant_model"]),
            "same",
            _r(test["auc_benign_vs_malignant_hog"]),
        ),
        "",
        "The test rows are reported once, after the recipe was chosen out-of-fold (model 2 "
        "fitted on train + val for them).",
        "",
        "## Operating points (pooled OOF, Youden's J)",
        "",
        "| head | threshold (score) | sensitivity | specificity |",
        "|---|---|---|---|",
        *[
            _row(k, f"{100 * p['threshold']:.1f}", _r(p["sensitivity"]), _r(p["specificity"]))
            for k, p in pts.items()
        ],
        _row(
            "per woman at the bilateral point", "", _r(exam["sensitivity"]), _r(exam["specificity"])
        ),
        "",
        f"Calibration: {CALIBRATION} ECE (OOF) {oof['ece']}.",
        "",
        "## Per lesion class at the bilateral point (OOF; counts, no AUCs)",
        "",
        "| class | images | flagged | sensitivity (95% CI) |",
        "|---|---|---|---|",
        *[
            _row(
                c,
                str(v["n_images"]),
                str(v["flagged"]),
                _r(v["sensitivity"]) if v["sensitivity"] else "-",
            )
            for c, v in oof["per_lesion_class_at_point"].items()
        ],
        "",
        "## Localisation",
        "",
        "The strongest bilateral difference (this breast brighter than the other at the same "
        f"place) lies inside the lesion for {_ci(loc['peak_in_lesion'])} of {loc['n_lesions']} "
        f"located lesions; a random breast pixel would: {loc['chance_rate']}. The served score "
        "map is still mammo-patch/1's (test: peak in lesion 0.28 vs chance 0.024).",
        "",
        "## Tried, not served: a lesion-centred pixel detector (same folds)",
        "",
        "Logistic regression per grid point on the evidence channels, the other breast's "
        "brightness at the same place and the position; positives at 1/4, 1/2 and the whole "
        "radius of every located lesion, 150 random negatives per image, optionally one round "
        "of hard negatives (the 30 highest-scoring per image). Its top responses added to the "
        "view statistics:",
        "",
        "| variant | OOF AUC (view model + detector) | detector max alone | peak in lesion (OOF) |",
        "|---|---|---|---|",
        *[
            _row(
                k,
                _r(v["oof_auc_with_view_statistics"]),
                f"{v['oof_auc_detector_max_alone']:.3f}",
                _r(v["peak_in_lesion"]),
            )
            for k, v in res["detector_search"].items()
        ],
        "",
        f"Its best variant is {gain:+.3f} AUC from the served recipe "
        f"({_r(a['bilateral'])}); it was not served: it adds a model and a pass over every grid "
        "point for a difference far inside either interval. Its peak lands in the lesion more "
        f"often than the bilateral difference's (chance {loc['chance_rate']}): the way to a "
        "score map of model 2's own.",
        "",
        "## Search (OOF AUC by C)",
        "",
        "```",
        json.dumps(res["search"], indent=1),
        "```",
        "",
        "![roc](roc_oof_normal_vs_abnormal.png) ![reliability](reliability_oof.png)",
        "",
    ]
    return "\n".join(lines)


def write_density(res: dict[str, Any], parity: float, folder: Path) -> None:
    oof, test = res["oof"], res["test"]
    card: dict[str, Any] = {
        "name": "mammo-density",
        "version": "1",
        "task": "breast background tissue: fatty (F), fatty-glandular (G), dense-glandular (D)",
        "framework": ONNX_FRAMEWORK.replace(
            "logistic regression", "multinomial logistic regression"
        ),
        "inputs": [
            card_tensor(
                "features",
                ["N", len(ev.DENSITY_FEATURES)],
                "bc_service.pipeline.evidence.DENSITY_FEATURES: " + ", ".join(ev.DENSITY_FEATURES),
            )
        ],
        "outputs": [card_tensor("probs", ["N", 3], "[P(F), P(G), P(D)]")],
        "labels": list(ev.DENSITY_LABELS),
        "preprocessing": served_preprocessing("mammo-density"),
        "training_data": {
            "dataset": f"mini-MIAS background tissue of all 322 images {res['counts']}: C chosen "
            f"by {CV}; served model refitted on all 322",
            "regularisation": {"C": res["C"]},
            "sources": {"mini-mias": SOURCES["mini-mias"]},
        },
        "metrics": {
            "split": "oof",
            "oof": {
                "accuracy": _typed(oof["accuracy"]),
                "quadratic_kappa": _typed(oof["quadratic_kappa"]),
            },
            "oof_details": {
                "confusion": oof["confusion"],
                "majority_class_accuracy": res["oof_majority_class_accuracy"],
                "search": res["search"],
            },
            "test": {
                "accuracy": _typed(test["accuracy"]),
                "quadratic_kappa": _typed(test["quadratic_kappa"]),
            },
            "test_details": {"confusion": test["confusion"]},
            "onnx_parity_max_abs_diff": parity,
        },
        "intended_use": "Tells the reader how far a negative screen of this breast can be "
        "trusted: dense tissue hides lesions. Not a BI-RADS density assessment.",
        "limitations": [
            *COMMON_LIMITS,
            "mini-MIAS's three tissue classes, not the four BI-RADS density categories; "
            "digitised film only.",
        ],
    }
    _write_typed(folder, card)
    plot_confusion(
        oof["confusion"],
        list(ev.DENSITY_LABELS),
        folder / "confusion_oof.png",
        "density, out-of-fold",
    )
    lines = [
        "# mammo-density v1 report",
        "",
        f"{CV}. No previous density model exists (no old row).",
        "",
        "| figure | mammo-density/1 | majority class |",
        "|---|---|---|",
        _row(
            "OOF accuracy (n=322)", _r(oof["accuracy"]), f"{res['oof_majority_class_accuracy']:.3f}"
        ),
        f"| OOF quadratic-weighted kappa | {_r(oof['quadratic_kappa'])} | 0 |",
        f"| fixed test accuracy (n=64, fitted on train + val) | {_r(test['accuracy'])} | |",
        f"| fixed test quadratic kappa | {_r(test['quadratic_kappa'])} | |",
        "",
        f"OOF confusion (rows true F, G, D; columns predicted): {oof['confusion']}. Both breasts "
        "of a woman carry the same label in "
        f"{100 * res['label_agreement_between_breasts']:.0f}% of women.",
        "",
        "![confusion](confusion_oof.png)",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))
