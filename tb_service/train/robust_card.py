"""The robust screen's ``card.json`` (chest-abnormality/3), built from the saved results of
:func:`tb_service.train.robust.cmd_robust`, with the figures of the earlier models
(chest-abnormality/1 and /2) beside the new ones. TensorFlow-free."""

from __future__ import annotations

import json
from typing import Any

from shared.model import file_sha256
from shared.train.card_writer import card_tensor
from tb_service.preprocess import DETAIL_SIDE, INPUT_SIZE, WORKING_SIDE, chest_pipeline
from tb_service.train.cards import SOURCES
from tb_service.train.results import ABN_NAME, MODELS, PREVIOUS_ROBUST_FOLDER, ROBUST_VERSION

V1_CARD = MODELS / ABN_NAME / "1" / "card.json"
POPULATION_FILE = "population.npz"
HANNOVER_SOURCE = (
    "Hannover Medical School COVID-19 films (CC BY 3.0, DOI 10.6084/m9.figshare.12275009): 88 "
    "frontal films of 28 patients, all COVID-19 positive; evaluation only. Same hospital as "
    "lung-masks/, which trained the lung segmentation, so it is less external than tbx11k."
)
INVARIANCE_NOTE = (
    "Invariance (the same film as JPEG q60/q95, PNG 8/16-bit, DICOM MONOCHROME1/2, at 0.5-4x "
    "its size, through the served path) is in invariance.md beside this card, written by "
    "`make chest-invariance`; the orientation table is models/chest-orientation/1/report.md "
    "and the gate's validity note models/chest-gate/1/validity.md. Not repeated here."
)


def v1_card() -> dict[str, Any]:
    return dict(json.loads(V1_CARD.read_text())) if V1_CARD.exists() else {}


def v1_rows(v1: dict[str, Any], served: dict[str, Any]) -> dict[str, Any]:
    """chest-abnormality/1's figures on the rows of the new report (its card, and the served
    checks that re-ran its ONNX file)."""
    m = v1.get("metrics", {})
    cross = m.get("cross_dataset", {})
    return {
        "test": m.get("test"),
        "test_nih": m.get("test_nih"),
        "test_kermany": m.get("test_kermany"),
        "loso_test_auc_other": {
            "train_nih-cxr14": (cross.get("train_nih-cxr14") or {}).get("test_other"),
            "train_kermany-pediatric": (cross.get("train_kermany-pediatric") or {}).get(
                "test_other"
            ),
        },
        "tbx11k": m.get("tbx11k"),
        "hannover": served.get("v1_hannover"),
        "threshold": (v1.get("threshold") or {}).get("abnormal"),
        "preprocessing": "working side 512 px, heuristic lung crop",
    }


def previous_robust_card() -> dict[str, Any]:
    path = PREVIOUS_ROBUST_FOLDER / "card.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def robust_rows(card: dict[str, Any]) -> dict[str, Any]:
    """An earlier robust screen's figures (chest-abnormality/2) on the rows of the new report,
    read from its card, which this module wrote in the same shape."""
    m = card.get("metrics", {})
    pre = card.get("preprocessing", {})
    detail = {step.get("stage") for step in pre.get("steps", [])} & {"detail_side"}
    loso = m.get("leave_one_source_out") or {}
    rel = (m.get("reliability") or {}).get("outside_population") or {}
    return {
        "test": m.get("test"),
        "test_nih": m.get("test_nih"),
        "test_kermany": m.get("test_kermany"),
        "loso_test_auc_other": {k: row.get("test_auc_other") for k, row in loso.items()},
        "loso_other_specificity": {
            k: (row.get("other_test") or {}).get("specificity") for k, row in loso.items()
        },
        "tbx11k": m.get("tbx11k"),
        "hannover": m.get("hannover_covid19"),
        "outside_population": rel,
        "threshold": (card.get("threshold") or {}).get("abnormal"),
        "preprocessing": f"working side {pre.get('working_side')} px, {pre.get('crop')}, "
        + ("with" if detail else "no")
        + " detail_side",
    }


def previous_rows(served: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every earlier model's rows, keyed as the report's columns ("v1", "v2")."""
    out = {"v1": v1_rows(v1_card(), served)}
    v2 = previous_robust_card()
    if v2:
        out[f"v{v2['version']}"] = robust_rows(v2)
    return out


def operating_point(res: dict[str, Any]) -> dict[str, Any]:
    """The typed ``operating_point`` section: threshold on the 0-100 score scale and the
    sensitivity/specificity measured at it on the held-out test split."""
    return {
        "score_threshold": round(100.0 * float(res["threshold"]), 4),
        "sensitivity": res["test_rates"]["sensitivity"],
        "specificity": res["test_rates"]["specificity"],
        "measured_on": "in-distribution test split of the training sources, nih-cxr14 + "
        "kermany-pediatric, held out from training and tuning (threshold chosen on their val "
        "split for sensitivity >= 0.90; val sensitivity "
        f"{res['val_rates']['sensitivity']['value']:.3f}, specificity "
        f"{res['val_rates']['specificity']['value']:.3f}). Not measured on films from other "
        "hospitals: trained on one source and read on the other, specificity fell to "
        f"{_loso_specificities(res)} (report.md)",
    }


def _loso_specificities(res: dict[str, Any]) -> str:
    """The other source's specificity of each leave-one-source-out run, e.g. "0.01 and 0.30"."""
    spec = [f"{run['other_test']['specificity']['value']:.2f}" for run in res["loso"].values()]
    return " and ".join(spec)


def robust_card(res: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    from tb_service.train.results import ROBUST_FOLDER as FOLDER

    pipe = chest_pipeline(INPUT_SIZE)
    t = float(res["threshold"])
    dims = res["population"]["dims"]
    metrics = {
        "split": "test",
        "threshold": t,
        "test": res["test"],
        "test_nih": res["test_nih"],
        "test_kermany": res["test_kermany"],
        "val": res["val"],
        "subtype_test_kermany": res["subtype_test"],
        "calibration": res["calibration"],
        "leave_one_source_out": res["loso"],
        "hannover_covid19": res.get("hannover"),
        "tbx11k": res.get("tbx11k"),
        "reliability": res["reliability"],
        "served_checks": res["served"],
        "shortcut_baselines_test": baselines,
        **{
            f"chest_abnormality_{k.removeprefix('v')}": rows
            for k, rows in previous_rows(res["served"]).items()
        },
        "search": res.get("search"),
        "invariance_and_orientation": INVARIANCE_NOTE,
        "ci": "95% percentile bootstrap, 1000 resamples",
    }
    return {
        "name": ABN_NAME,
        "version": ROBUST_VERSION,
        "task": "Chest X-ray screen: normal vs abnormal (pneumonia), with a class-activation "
        "map, an embedding for the population distance, and a bacterial-vs-viral head "
        "meaningful only for abnormal films; trained for robustness across sources",
        "inputs": [
            card_tensor(
                "image",
                ["N", INPUT_SIZE, INPUT_SIZE, 1],
                "tb_service.preprocess.chest_pipeline() output (z-scored)",
            )
        ],
        "outputs": [
            card_tensor(
                "probs",
                ["N", 2],
                "[p_normal, p_abnormal], calibrated on val (T and the abnormal-logit shift "
                "folded in)",
            ),
            card_tensor(
                "cam",
                ["N", INPUT_SIZE // 16, INPUT_SIZE // 16],
                "class-activation map for 'abnormal' over the network input (the lung crop), "
                ">= 0, not normalised",
            ),
            card_tensor(
                "subtype", ["N", 2], "[p_bacterial, p_viral]; only meaningful when abnormal"
            ),
            card_tensor(
                "embedding",
                ["N", dims],
                "pooled penultimate features; tb_service.reliability measures the population "
                "distance in them",
            ),
        ],
        "labels": ["normal", "abnormal"],
        "subtype_labels": ["bacterial", "viral"],
        "preprocessing": {
            "pipeline": "tb_service.preprocess.chest_pipeline",
            "input_size": INPUT_SIZE,
            "detail_side": DETAIL_SIDE,
            "working_side": WORKING_SIDE,
            "crop": res["crop_stage"],
            "steps": pipe.describe(),
        },
        "training_data": {
            "train_on": ["nih-cxr14 train", "kermany-pediatric train"],
            "threshold_and_temperature_on": "val (nih-cxr14 + kermany-pediatric)",
            "variant_chosen_on": "val only: leave-one-source-out AUCs and the pooled "
            "within-source AUC (search.md)",
            "reported_on": "test (nih-cxr14 + kermany-pediatric); tbx11k and hannover-covid19 "
            "(all, evaluation only, never trained or tuned on)",
            "splits": res["counts"],
            "sources": {
                **{k: SOURCES[k] for k in ("nih-cxr14", "kermany-pediatric", "tbx11k")},
                "hannover-covid19": HANNOVER_SOURCE,
                "mini-mias": SOURCES["mini-mias"],
            },
        },
        "metrics": metrics,
        "threshold": {"abnormal": t, "rule": "sensitivity>=0.90 on val"},
        "operating_point": operating_point(res),
        "calibration": {
            "temperature": res["temperature"],
            "logit_bias": res.get("logit_bias", 0.0),
            "method": "softmax(logits / T + [0, bias]), T and bias minimise the val NLL",
            "fitted_on": "val",
            "ece_test_before": res["calibration"]["ece_test_before"],
            "ece_test_after": res["calibration"]["ece_test_after"],
        },
        "reliability": {
            "file": POPULATION_FILE,
            "sha256": file_sha256(FOLDER / POPULATION_FILE),
            "method": "Mahalanobis distance to the nearest training-source mean, tied "
            "Ledoit-Wolf shrunk covariance of the source-centred train embeddings",
            "fitted_on": "train embeddings of nih-cxr14 + kermany-pediatric",
            "limit_on": f"val: the {res['population']['quantile']:.2f} quantile of val distances",
            "limit_quantile": res["population"]["quantile"],
            "limit_raw": res["population"]["limit_raw"],
            "groups": res["population"]["groups"],
            "distance_unit": "the limit: a distance above 1.0 is outside the validated "
            "population (ChestPrediction.reliability)",
        },
        "parity": res["parity"],
        "training": {
            "variant": res["variant"],
            "description": res["variant_description"],
            "members": res["members"],
            "runs": res["runs"],
            "framework": "tensorflow/keras 3 -> tf2onnx",
            "pretrained": False,
        },
        "intended_use": "Research prototype for triage of frontal chest X-rays (pneumonia-like "
        "abnormality) after the chest-gate accepted the image. Not a medical device; every "
        "result needs a radiologist. A film outside the validated population is always "
        "'review recommended'.",
        "limitations": [
            "No TB training data: the model never saw a TB label. TB figures are only TBX11K "
            "flag rate and heatmap localisation against lesion boxes (no TB-negative films).",
            "Only two training sources (NIH adults, Kermany children), 128 px, random init on a "
            "CPU. Leave-one-source-out AUCs are the honest estimate for a new hospital.",
            "No normal films from any external hospital: specificity outside the two sources "
            "is measured only as the other source's normals (leave-one-source-out).",
            "hannover-covid19 shares its hospital with the lung-segmentation training films.",
            "The population distance knows only NIH and Kermany: a site's own validation run "
            "is the way to extend it; films it calls inside are not thereby validated.",
            "NIH labels are report-mined and noisy; 'abnormal' here means pneumonia-labelled.",
            INVARIANCE_NOTE,
        ],
    }
