"""The mammography models' folders: ``card.json`` (what the service reads, and the model card
of record), ``report.md`` and the plots drawn from the saved results. TensorFlow-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bc_service.pipeline.cards import served_preprocessing
from bc_service.pipeline.features import (
    GATE_SIZE,
    PATCH_LABELS,
    PATCH_SIZE,
    VIEW_FEATURES,
    WORK_HEIGHT,
)
from bc_service.train.workspace import VERSION, Config, model_folder
from shared.train.card_writer import card_tensor, typed_metrics, typed_thresholds, write_card
from shared.train.plots import plot_confusion, plot_history

SOURCES = {
    "mini-mias": "Suckling et al., The Mammographic Image Analysis Society Digital Mammogram "
    "Database, Excerpta Medica ICS 1069, 1994 (research use only).",
    "nih-cxr14": "Wang et al., ChestX-ray8, CVPR 2017 (NIH Clinical Center).",
    "kermany-pediatric": "Kermany et al., Cell 2018; Mendeley Data, CC BY 4.0.",
}


CI_METHOD = "95% percentile bootstrap, 2000 resamples stratified by class (bc_service.train)"


def _write_typed(folder: Path, card: dict[str, Any]) -> None:
    """Write ``card`` in the typed card's shape (``shared.model.ModelCard``): intervals as
    ``ci95``, thresholds as ``{name: value, "rule": how}``, preprocessing from the served
    stages (set by the writers), so that bc_service loads what training wrote."""
    typed_metrics(card, CI_METHOD)
    problems = typed_thresholds(card)
    if problems:
        raise ValueError(f"{card['name']}: {'; '.join(problems)}")
    write_card(folder, card)


def _ci(m: dict[str, Any]) -> str:
    """``value (95% CI low-high, n=N)`` of an estimate."""
    return f"{m['value']:.3f} (95% CI {m['ci_low']:.3f}-{m['ci_high']:.3f}, n={m['n']})"


KERAS_ONNX = "onnx (Keras 3 / TensorFlow 2.21 → tf2onnx, opset 13)"
COMMON_LIMITS = [
    "Trained on mini-mias only: 322 digitised FILM MLO mammograms (1990s, 200 um/px) from one "
    "source; no full-field digital mammography, no tomosynthesis.",
    "No CC views in the training data: CC views are accepted (orientation, crop and geometry "
    "apply to them) but the models never saw one; CC/MLO detection is a shape heuristic.",
    "Small test split (64 images, 25 located lesions): confidence intervals are wide.",
    "Screening aid for research, not a diagnostic device: a radiologist must read the images.",
]


def write_gate(res: dict[str, Any]) -> None:
    folder = model_folder("mammo-gate")
    card = {
        "name": "mammo-gate",
        "version": VERSION,
        "task": "validity gate: is this image a mammogram? (binary)",
        "framework": KERAS_ONNX,
        "inputs": [
            card_tensor(
                "image",
                ["N", GATE_SIZE, GATE_SIZE, 1],
                "whole image, 8-bit gray, squashed to 96x96, /255",
            )
        ],
        "outputs": [card_tensor("p_mammogram", ["N", 1])],
        "labels": ["mammogram"],
        "preprocessing": served_preprocessing("mammo-gate"),
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
    _write_typed(folder, card)
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


def write_patch(cfg: Config, res: dict[str, Any], acts: dict[str, Any] | None) -> None:
    folder = model_folder("mammo-patch")
    card = {
        "name": "mammo-patch",
        "version": VERSION,
        "task": "patch classifier: normal tissue / benign lesion / malignant lesion",
        "framework": KERAS_ONNX,
        "inputs": [
            card_tensor(
                "patches",
                ["N", PATCH_SIZE, PATCH_SIZE, 1],
                "CLAHE-enhanced working image /255; "
                f"working image = breast crop resized to height {WORK_HEIGHT}, chest wall left",
            )
        ],
        "outputs": [card_tensor("probs", ["N", 3])],
        "labels": PATCH_LABELS,
        "preprocessing": served_preprocessing("mammo-patch"),
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
    _write_typed(folder, card)
    t = res["test"]
    plot_history([res["history"]], folder / "training.png", "mammo-patch training")
    plot_confusion(t["confusion"], PATCH_LABELS, folder / "confusion_test.png", "patches on test")
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


def write_view(cfg: Config, res: dict[str, Any]) -> None:
    folder = model_folder("mammo-view")
    t = res["test"]
    card = {
        "name": "mammo-view",
        "version": VERSION,
        "task": "per-view benign and malignant probabilities from the patch heatmaps",
        "framework": "onnx (Keras 3 Dense+sigmoid holding scikit-learn logistic regression "
        "weights → tf2onnx, opset 13)",
        "inputs": [
            card_tensor(
                "features",
                ["N", len(VIEW_FEATURES)],
                "statistics of the patch probabilities inside the optimal "
                "window: " + ", ".join(VIEW_FEATURES),
            )
        ],
        "outputs": [card_tensor("probs", ["N", 2], "[P(benign finding), P(malignant finding)]")],
        "labels": ["benign", "malignant"],
        "preprocessing": served_preprocessing("mammo-view"),
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
    _write_typed(folder, card)
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
        timing = res["timing"]
        lines += [
            f"## Time per view on this machine ({timing['machine']}, "
            f"median of {timing['n_views']})",
            "",
            "| stage | ms |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in timing["median_ms_by_stage"].items()],
            f"| total | {timing['median_total_ms']} |",
            "",
            timing["note"],
            "",
        ]
    (folder / "report.md").write_text("\n".join(lines))
