"""Write ``tb_service/models/lung-seg/<version>/``: card.json (typed, checked against
:class:`shared.model.ModelCard`), report.md and plots (curves only, never images of the data).
TensorFlow-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.train.card_writer import card_tensor, typed_metrics, write_card
from shared.train.plots import _pyplot, _save, plot_history
from tb_service.lungmask import LungMargin, LungMaskLimits
from tb_service.lungseg import SEG_MODEL, seg_pipeline
from tb_service.train.reports import fmt
from tb_service.train.seg_data import SEG_VERSION

CITATION = (
    "lung-masks: 77 COVID-19 films from Hannover Medical School (CC BY 3.0, DOI "
    "10.6084/m9.figshare.12275009) and 3 from the COVID-19 image data collection (ieee8023, "
    "per-image CC BY / CC BY-SA), lung masks by V7 Labs (CC BY 4.0) and GeneralBlockchain "
    "(CC BY 4.0)."
)
SEG_ONLY = (
    "lung-masks' films are all COVID-positive and come from the hospital of hannover-covid19 "
    "(Hannover Medical School): they train and choose this segmentation model only, never the "
    "screen. The screen's crop therefore depends on a model fitted on that hospital's films, "
    "which makes hannover-covid19 less external for any screen behind this crop (its patients "
    "are not in lung-masks, but its scanners, technique and film look are)."
)
KERMANY_NOTE = (
    "No child is in lung-masks, so no pediatric Dice exists. On kermany-pediatric (children aged "
    "1-5) the masks were checked by the plausibility rules on every film (two lungs, each a "
    "plausible share of the lung area, one each side of the centre, in the expected vertical "
    "band, total area share, little stray mask: the survey table) and by eye on 12 "
    "randomly drawn films (seed 0; overlays viewed in the training session, never saved into "
    "the repository): 11 masks followed both lung fields, the crop box kept both lungs with "
    "their angles, and the one implausible mask (a densely consolidated left lung, found as "
    "unbalanced_lungs) kept the whole image. 12 NIH films looked the same (all plausible; "
    "under-segmented opaque lungs stay inside the box through the margin)."
)


def seg_card(res: dict[str, Any]) -> dict[str, Any]:
    size = int(res["input_size"])
    survey = {
        src: {k: v for k, v in row.items() if k != "mask_area_share"}
        for src, row in (res.get("survey") or {}).items()
    }
    return {
        "name": SEG_MODEL,
        "version": SEG_VERSION,
        "task": "Lung-field segmentation of frontal chest X-rays (both lungs, one mask), used to "
        "crop the screen's input to the lung fields with a margin",
        "inputs": [
            card_tensor(
                "image",
                ["N", size, size, 1],
                "tb_service.lungseg.seg_pipeline() output (squashed square, z-scored)",
            )
        ],
        "outputs": [card_tensor("lung", ["N", size, size], "P(lung) per pixel (sigmoid)")],
        "labels": ["background", "lung"],
        "preprocessing": {
            "pipeline": "tb_service.lungseg.seg_pipeline",
            "input_size": size,
            "steps": seg_pipeline(size).describe(),
        },
        "training_data": {
            "train_on": f"lung-masks train ({res['counts']['train']} films)",
            "threshold_and_epoch_on": f"lung-masks val ({res['counts']['val']} films)",
            "reported_on": f"lung-masks test ({res['counts']['test']} films)",
            "splits": res["counts"],
            "left_out_empty_masks": res["left_out_empty_masks"],
            "split_rule": "lung-masks splits.csv (patient-level) as shipped",
            "sources": {"lung-masks": CITATION},
            "segmentation_only": SEG_ONLY,
        },
        "metrics": {
            "split": "test",
            "ci": "95% percentile bootstrap over films, 1000 resamples",
            "resolution": "original film resolution (mask resized back, then thresholded)",
            "test": {"dice": res["test"]["dice"], "iou": res["test"]["iou"]},
            "val": res["val"],
            "test_per_film": res["test_per_film"],
            "val_dice_by_threshold": res["val_dice_by_threshold"],
            "crop_on_test": res.get("crop_on_test", "not run"),
            "plausibility_by_source": survey or "not run",
        },
        "threshold": {"lung": res["threshold"], "rule": "best mean val Dice (0.30-0.70)"},
        "crop": {
            "transform": "tb_service.lungseg.LungSegCrop (stage lung_seg_crop)",
            "margin": LungMargin().__dict__,
            "plausibility": LungMaskLimits().__dict__,
            "implausible": "whole image kept + reliability reason implausible_lung_mask",
        },
        "parity": res["parity"],
        "training": {
            "config": res["config"],
            "best_epoch": res["best_epoch"],
            "train_seconds": res["train_seconds"],
            "framework": "tensorflow/keras 3 -> tf2onnx",
            "pretrained": False,
        },
        "intended_use": "Locate the lung fields of a frontal chest X-ray so the chest screen sees "
        "them (with hila, mediastinum, costophrenic angles and the retrocardiac region kept by "
        "a margin), and flag films whose mask is implausible. Not a diagnostic model; the mask "
        "is not a delineation for clinical use.",
        "limitations": [
            f"Trained on {res['counts']['train']} adult films of COVID-19 patients from one "
            "hospital (Hannover), tested on 9: the CI is wide and other hospitals' films are "
            "only covered by the plausibility survey, not by Dice.",
            KERMANY_NOTE,
            "128 px input: the mask is coarse (about 4 px at 512 px); it serves a crop box, "
            "not a lesion outline.",
            "Dense consolidation or a large effusion can remove a lung from the mask; such a "
            "film is then implausible and keeps the whole image (flagged), never cropped to "
            "one lung.",
            SEG_ONLY,
        ],
    }


def plot_areas(survey: dict[str, Any], path: Path) -> None:
    """Histogram of the mask's share of the image per source (a plot, no images)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    bins = [i / 40 for i in range(0, 33)]
    for src, row in survey.items():
        ax.hist(row["mask_area_share"], bins=bins, histtype="step", density=True, label=src)
    lim = LungMaskLimits()
    for v in (lim.min_total_share, lim.max_total_share):
        ax.axvline(v, color="k", ls=":", lw=0.8)
    ax.set_xlabel("predicted lung mask, share of the image")
    ax.set_ylabel("density")
    ax.set_title("lung-seg mask area per source (dotted: plausible range)", fontsize=9)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def seg_report(res: dict[str, Any]) -> str:
    t = res["test"]
    lines = [
        "# lung-seg v1: lung-field segmentation",
        "",
        "A small U-Net (TensorFlow/Keras, exported with tf2onnx) that segments both lung fields "
        "of a frontal chest X-ray. The chest pipeline's `lung_seg_crop` step "
        "(`tb_service.lungseg.LungSegCrop`) crops the screen's input to both lungs plus a "
        "margin, and flags films whose mask is implausible (`implausible_lung_mask`) instead "
        "of silently falling back.",
        "",
        "## Data",
        "",
        CITATION,
        f"Patient-level splits as shipped; films with an empty published mask are left out "
        f"({', '.join(res['left_out_empty_masks']) or 'none'}: the three ieee8023 films' "
        f"masks are all zero). Train {res['counts']['train']}, val {res['counts']['val']}, "
        f"test {res['counts']['test']}.",
        "",
        SEG_ONLY,
        "",
        "## Test (lung-masks)",
        "",
        "| metric | mean (95% CI) | films |",
        "| --- | --- | --- |",
        f"| Dice | {fmt(t['dice'])} | {t['dice']['n']} |",
        f"| IoU | {fmt(t['iou'])} | {t['iou']['n']} |",
        "",
        f"Measured at each film's original resolution, threshold {res['threshold']} (best mean "
        f"val Dice; val Dice {fmt(res['val']['dice'])}). Epoch {res['best_epoch']} of "
        f"{res['config']['epochs']} (best val Dice), {res['config']['params']:,} parameters, "
        f"{res['train_seconds']:.0f} s of training on 2 CPU threads. Keras vs ONNX Runtime "
        f"max |diff| {res['parity']['max_abs_diff']} on {res['parity']['images']} films.",
        "",
        f"Augmentation: {res['config']['augmentation']}.",
        "",
    ]
    crop = res.get("crop_on_test")
    if isinstance(crop, dict):
        lines += [
            "## The crop on the test films",
            "",
            f"Share of the true lung pixels inside the crop box: mean "
            f"{crop['lung_pixels_inside_crop_mean']}, minimum "
            f"{crop['lung_pixels_inside_crop_min']} ({crop['n']} films); plausible masks "
            f"{fmt(crop['plausible_share'])}.",
            "",
        ]
    survey = res.get("survey") or {}
    if survey:
        lines += [
            "## Plausible masks per source (all films) vs the heuristic crop",
            "",
            "Plausible: two large components, each >= 25% of the lung area, one each side of "
            "the centre, centroids in 15-75% of the height, 6-75% of the image, >= 85% of the "
            "mask in the two lungs. The heuristic `lung_crop` (`find_lung_box`, the crop of "
            "chest-abnormality/1) falls back to the whole image when it returns no box, as "
            "`tb_service.train.evaluate.fallback_share` counts it; both measured on the same "
            "films after the same gray/downscale/median steps.",
            "",
            "| source | films | plausible lung-seg mask | heuristic fallback | both fail | "
            "median mask area |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for src, row in survey.items():
            lines.append(
                f"| {src} | {row['n']} | {fmt(row['plausible_share'])} | "
                f"{fmt(row['heuristic_fallback_share'])} | "
                f"{row['implausible_and_heuristic_fallback']} | "
                f"{row['mask_area_share_quantiles']['50']} |"
            )
        lines += ["", "Plausible share by label:", ""]
        for src, row in survey.items():
            by = ", ".join(f"{k} {v}" for k, v in row["plausible_share_by_label"].items())
            lines.append(f"- {src}: {by}; problems: {row['problems'] or 'none'}")
        lines += [
            "",
            "Implausible masks are more frequent on pneumonia films (dense consolidation takes "
            "a lung out of the mask): on Kermany the flag, and the whole-image crop that comes "
            "with it, carries label information. A screen trained behind this crop should not "
            "learn from the crop's extent; the flag routes those films to review instead.",
            "",
            "![mask area per source](mask_area_by_source.png)",
            "",
            KERMANY_NOTE,
            "",
        ]
    lines += [
        "## Command",
        "",
        "`make train-lung-seg` (= `python -m tb_service.train lung-seg`; "
        "`lung-seg-report` re-runs the evaluation and rewrites this folder).",
        "",
    ]
    return "\n".join(lines)


def write_seg(folder: Path, res: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    plot_history(
        [{"train loss": res["history"]["loss"]}, {"val Dice @0.5": res["history"]["val_dice"]}],
        folder / "curves.png",
        "lung-seg training",
    )
    if res.get("survey"):
        plot_areas(res["survey"], folder / "mask_area_by_source.png")
    card = seg_card(res)
    typed_metrics(card, card["metrics"]["ci"])  # intervals as ci95, as every card has them
    write_card(folder, card)
    (folder / "report.md").write_text(seg_report(res))
