"""The chest models' cards (``card.json``): what the service reads and the model card of
record (data, splits, metrics with CIs, threshold and how it was chosen, intended use,
limitations). Built from the saved training results; TensorFlow-free."""

from __future__ import annotations

from typing import Any

from shared.train.card_writer import card_tensor
from tb_service.preprocess import GATE_INPUT_SIZE, INPUT_SIZE, chest_pipeline, gate_pipeline
from tb_service.train.results import VERSION

SOURCES = {
    "nih-cxr14": "Wang et al., 'ChestX-ray8', CVPR 2017; NIH Clinical Center (public, no "
    "restriction on use). 1,000 PA films: 500 'No Finding', 500 'Pneumonia' (report-mined, noisy).",
    "kermany-pediatric": "Kermany et al., Cell 2018; Mendeley Data, CC BY 4.0. 1,566 AP films of "
    "children aged 1-5 (Guangzhou): normal, bacterial and viral pneumonia.",
    "tbx11k": "Liu et al., 'Rethinking Computer-aided Tuberculosis Diagnosis', CVPR 2020. 800 "
    "TB-positive films with lesion boxes; evaluation only, never trained or tuned on.",
    "mini-mias": "Suckling et al., 'The Mammographic Image Analysis Society Digital Mammogram "
    "Database', Excerpta Medica ICS 1069, 1994 (research use only).",
    "natural": "Photographs bundled with scikit-image (skimage.data) and scikit-learn "
    "(load_sample_images), whole and random crops.",
    "dicom": "CT, MR and other test images bundled with pydicom.",
    "synthetic": "Generated: blank, noise, text pages, gradients, checkerboards.",
    "rotated_chest": "Chest films of the same split rotated by 90 or 270 degrees.",
}


def gate_card(res: dict[str, Any]) -> dict[str, Any]:
    """The chest-gate card from ``cmd_gate``'s results."""
    pipe = gate_pipeline(GATE_INPUT_SIZE)
    t = res["threshold"]
    return {
        "name": "chest-gate",
        "version": VERSION,
        "task": "Is the image a frontal chest X-ray? (validity gate in front of the screen)",
        "inputs": [
            card_tensor(
                "image",
                ["N", GATE_INPUT_SIZE, GATE_INPUT_SIZE, 1],
                "tb_service.preprocess.gate_pipeline() output, values 0..1",
            )
        ],
        "outputs": [card_tensor("probs", ["N", 2], "[p_not_chest, p_chest]")],
        "labels": ["not_chest", "chest"],
        "preprocessing": {
            "pipeline": "tb_service.preprocess.gate_pipeline",
            "input_size": GATE_INPUT_SIZE,
            "steps": pipe.describe(),
        },
        "training_data": {
            "positives": ["nih-cxr14", "kermany-pediatric"],
            "negatives": ["mini-mias", "natural", "dicom", "synthetic", "rotated_chest"],
            "splits": res["counts"],
            "split_rule": "project splits.csv for the chest sets and mini-mias; deterministic "
            "hash split for the other negatives; tbx11k only evaluated",
            "sources": {
                k: SOURCES[k]
                for k in (
                    "nih-cxr14",
                    "kermany-pediatric",
                    "mini-mias",
                    "natural",
                    "dicom",
                    "synthetic",
                    "rotated_chest",
                    "tbx11k",
                )
            },
        },
        "metrics": {
            "split": "test",
            "threshold": t,
            "test": res["test"],
            "test_per_source_correct_share": res["test_per_source"],
            "val_auc": res["val_auc"],
            "ci": "95% percentile bootstrap, 1000 resamples",
        },
        "threshold": {"chest": t, "rule": ">= 99% of val chest X-rays accepted, at most 0.5"},
        "calibration": {"temperature": 1.0, "note": "not calibrated; only thresholded"},
        "parity": res["parity"],
        "training": {
            "config": res["config"],
            "best_epoch": res["best_epoch"],
            "train_seconds": res["train_seconds"],
            "framework": "tensorflow/keras 3 -> tf2onnx",
        },
        "intended_use": "Reject uploads that are not chest radiographs before the abnormality "
        "screen runs. Not a diagnostic model.",
        "limitations": [
            "Negatives are few and narrow (mammograms, a few dozen photographs and their crops, "
            "pydicom test files, synthetic images): unusual non-chest inputs may pass.",
            "Lateral chest films, other body-part radiographs (hand, knee, abdomen) were not in "
            "the training data; their handling is unknown.",
            "64 px input: it decides on coarse layout, not detail.",
            "Test negatives are few (8 DICOM, 24 photographs/crops, 12 synthetic, 64 "
            "mammograms, 179 rotated chest films): the perfect test score is on an easy set.",
        ],
    }


def abnormality_card(
    res: dict[str, Any], base: dict[str, Any], exp: dict[str, Any], diag: dict[str, Any] | None
) -> dict[str, Any]:
    """The chest-abnormality card from ``cmd_abnormality``'s results, with the baselines,
    experiments and TBX11K diagnostics saved beside them (each may be missing)."""
    t = res["threshold"]
    pipe = chest_pipeline(INPUT_SIZE)
    tbx = res.get("tbx11k", {})
    metrics = {
        "split": "test",
        "threshold": t,
        "test": res["test"],
        "test_nih": res["test_nih"],
        "test_kermany": res["test_kermany"],
        "val": res["val"],
        "subtype_test_kermany": res["subtype_test"],
        "subtype_val_auc": res["subtype_val_auc"],
        "calibration": {
            k: v for k, v in res["calibration"].items() if k != "reliability_test_after"
        },
        "tbx11k": tbx,
        "tbx11k_cam_diagnostics": diag or "not run",
        "shortcut_baselines_test": base,
        "cross_dataset": exp.get("cross_dataset", "not run"),
        "backbone_comparison_val": res["backbone_comparison"],
        "output_activation_table": exp.get("activations", "not run"),
        "ci": "95% percentile bootstrap, 1000 resamples",
    }
    return {
        "name": "chest-abnormality",
        "version": VERSION,
        "task": "Chest X-ray screen: normal vs abnormal (pneumonia), with a class-activation "
        "map, and a bacterial-vs-viral head meaningful only for abnormal films",
        "inputs": [
            card_tensor(
                "image",
                ["N", INPUT_SIZE, INPUT_SIZE, 1],
                "tb_service.preprocess.chest_pipeline() output (z-scored)",
            )
        ],
        "outputs": [
            card_tensor(
                "probs", ["N", 2], "[p_normal, p_abnormal], temperature-scaled (T folded in)"
            ),
            card_tensor(
                "cam",
                ["N", INPUT_SIZE // 16, INPUT_SIZE // 16],
                "class-activation map for 'abnormal' over the network input "
                "(the lung crop), ReLU(features . (w_abnormal - w_normal)), >= 0, not normalised",
            ),
            card_tensor(
                "subtype", ["N", 2], "[p_bacterial, p_viral]; only meaningful when abnormal"
            ),
        ],
        "labels": ["normal", "abnormal"],
        "subtype_labels": ["bacterial", "viral"],
        "preprocessing": {
            "pipeline": "tb_service.preprocess.chest_pipeline",
            "input_size": INPUT_SIZE,
            "steps": pipe.describe(),
            "lung_crop_fallback_share": res.get("lung_crop_fallback_share"),
        },
        "training_data": {
            "train_on": ["nih-cxr14 train", "kermany-pediatric train"],
            "threshold_and_temperature_on": "val (nih-cxr14 + kermany-pediatric)",
            "reported_on": "test (nih-cxr14 + kermany-pediatric); tbx11k (all, evaluation only)",
            "splits": res["counts"],
            "sources": {k: SOURCES[k] for k in ("nih-cxr14", "kermany-pediatric", "tbx11k")},
        },
        "metrics": metrics,
        "threshold": {
            "abnormal": t,
            "rule": "sensitivity>=0.90 on val",
            "val_sensitivity": res["val"]["sensitivity"]["value"],
            "val_specificity": res["val"]["specificity"]["value"],
        },
        "calibration": {
            "temperature": res["temperature"],
            "fitted_on": "val",
            "ece_test_before": res["calibration"]["ece_test_before"],
            "ece_test_after": res["calibration"]["ece_test_after"],
        },
        "parity": res["parity"],
        "training": {
            "backbone": res["backbone"],
            "config": res["config"],
            "best_epoch": res["best_epoch"],
            "train_seconds": res["train_seconds"],
            "framework": "tensorflow/keras 3 -> tf2onnx",
            "pretrained": False,
        },
        "intended_use": "Research prototype for triage of frontal chest X-rays (pneumonia-like "
        "abnormality) after the chest-gate accepted the image. Not a medical device; every "
        "result needs a radiologist.",
        "limitations": [
            "No TB training data: the model never saw a TB label. TB figures are only TBX11K "
            "sensitivity (share flagged abnormal) and heatmap localisation against lesion boxes.",
            "Trained on 1,685 images (656 NIH adults, 1,029 Kermany children) at 128 px from "
            "random initialisation on a CPU: small, low-resolution, no ImageNet pretraining.",
            "Shortcuts: simple features (Kermany image size/aspect ratio, NIH histogram and HOG) "
            "predict these labels; see the shortcut baselines and the cross-dataset AUCs, which "
            "are the honest estimate of performance on a new site.",
            "NIH labels are report-mined and noisy; 'abnormal' here means pneumonia-labelled.",
            "Subtype head (bacterial vs viral) is trained on children only (Kermany) and is "
            "meaningful only for abnormal films.",
            "The CAM is 8x8 over the lung crop: coarse localisation, not segmentation.",
            "The lung crop falls back to the whole image when localisation is unsure "
            "(see preprocessing.lung_crop_fallback_share).",
        ],
    }
