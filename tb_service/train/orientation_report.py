"""The chest-orientation model's ``card.json`` and ``report.md`` (TensorFlow-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.train.card_writer import card_tensor, intervals, write_card
from shared.train.plots import plot_confusion, plot_history
from tb_service.preprocess import GATE_INPUT_SIZE, gate_pipeline
from tb_service.train.cards import SOURCES
from tb_service.train.reports import fmt

HANNOVER = (
    "Hannover Medical School COVID-19 image repository (CC BY 3.0, DOI "
    "10.6084/m9.figshare.12275009): 88 frontal films of 28 COVID-19 patients; evaluation only."
)

ORIENTATION_NOTE = (
    "Transform t: mirrored = t >= 4 (left-right flip of the upright film), then rotated "
    "90 * (t % 4) degrees counter-clockwise. Served: a confident rotation is undone before the "
    "gate and the screen (crop box and heatmap mapped back onto the upload); a suspected "
    "mirror is flagged (reliability reason `mirrored`), never corrected, because dextrocardia "
    "looks the same; an uncertain rotation is not applied and raises `orientation_uncertain`."
)


def _false_mirror(res: dict[str, Any], table: str) -> float:
    row = res["tables"].get(table, {}).get("mirror_false_flag", {})
    return float(row.get("value", float("nan")))


def orientation_card(res: dict[str, Any]) -> dict[str, Any]:
    pooled = res["tables"]["pooled test"]
    th = res["thresholds"]
    return {
        "name": "chest-orientation",
        "version": "1",
        "task": "Which of the 8 dihedral transforms (rotation 0/90/180/270, mirrored or not) "
        "turns an upright chest film into this upload?",
        "inputs": [
            card_tensor(
                "image",
                ["N", GATE_INPUT_SIZE, GATE_INPUT_SIZE, 1],
                "tb_service.preprocess.gate_pipeline() output, values 0..1",
            )
        ],
        "outputs": [card_tensor("probs", ["N", 8], "probabilities of the labels, in order")],
        "labels": res["labels"],
        "preprocessing": {
            "pipeline": "tb_service.preprocess.gate_pipeline",
            "input_size": GATE_INPUT_SIZE,
            "steps": gate_pipeline(GATE_INPUT_SIZE).describe(),
        },
        "training_data": {
            "method": "self-supervised: every film in each of its 8 transforms, applied to the "
            "decoded film before preprocessing",
            "train": ["nih-cxr14", "kermany-pediatric"],
            "evaluation_only": ["tbx11k", "hannover-covid19"],
            "splits": res["counts"],
            "split_rule": "project splits.csv; tbx11k and hannover-covid19 only evaluated",
            "sources": {
                "nih-cxr14": SOURCES["nih-cxr14"],
                "kermany-pediatric": SOURCES["kermany-pediatric"],
                "tbx11k": SOURCES["tbx11k"],
                "hannover-covid19": HANNOVER,
            },
        },
        "metrics": intervals(
            {
                "split": "test",
                "ci": "95% percentile bootstrap over film-transform pairs, 1000 resamples",
                "test": {
                    "accuracy_8way": pooled["accuracy_8way"],
                    "mirror_detected": pooled["mirror_detected"],
                    "mirror_false_flag": pooled["mirror_false_flag"],
                    "upright_flagged": pooled["upright_flagged"],
                    **{
                        f"rotation_{deg}_correct": row["correct"]
                        for deg, row in pooled["rotation"].items()
                    },
                },
                "tables": res["tables"],
                "val": res["val"],
                "confusion_test": res["confusion_test"],
            }
        ),
        "threshold": {
            "rotation": th["rotation"],
            "mirrored": th["mirrored"],
            "rule": f"rotation: {res['rules']['rotation']}; mirrored: {res['rules']['mirrored']}",
        },
        "parity": res["parity"],
        "training": {
            "config": res["config"],
            "best_epoch": res["best_epoch"],
            "train_seconds": res["train_seconds"],
            "framework": "tensorflow/keras 3 -> tf2onnx",
        },
        "intended_use": "Turn rotated frontal chest films upright before the validity gate and "
        "the screen, and flag films that look mirrored or whose orientation is unclear. "
        + ORIENTATION_NOTE,
        "limitations": [
            "Trained on two sources (NIH adults PA, Kermany children AP); other sources are "
            "measured on tbx11k and hannover-covid19 only.",
            "Mirror detection rests on the heart, aortic arch and stomach-bubble side and on "
            "burned-in markers; it cannot tell dextrocardia or situs inversus from a mirrored "
            "film, so a flag means 'check the orientation', not an error.",
            "64 px input; lateral films, other body parts and non-films were never seen: the "
            "validity gate, which runs after it, decides those.",
            "Rotations other than multiples of 90 degrees are not modelled.",
            "Outside the training sources the mirror flag over-fires: on hannover-covid19 "
            f"{_false_mirror(res, 'hannover-covid19 (all, evaluation only)'):.1%} "
            "of unmirrored films are flagged mirrored (test splits: "
            f"{pooled['mirror_false_flag']['value']:.1%}); each flag makes the answer "
            "`outside_population` (review recommended), fail-safe but a cost.",
        ],
    }


def _rate(e: dict[str, Any]) -> str:
    return fmt(intervals(e))


def orientation_report(res: dict[str, Any]) -> str:
    th = res["thresholds"]
    lines = [
        "# chest-orientation v1: is the film rotated or mirrored?",
        "",
        ORIENTATION_NOTE,
        "",
        f"Thresholds chosen on val: rotation >= **{th['rotation']:.3f}** "
        f"({res['rules']['rotation']}); mirrored >= **{th['mirrored']:.4f}** "
        f"({res['rules']['mirrored']}).",
        "",
        "## Orientation table (as served, with the thresholds; 95% bootstrap CIs)",
        "",
        "Each film is sent in all 8 transforms. `turned right` = rotation undone correctly; "
        "`unsure` = orientation_uncertain (scored as uploaded, flagged); `wrong` = turned the "
        "wrong way (the harmful case). `mirror detected` = flagged among the 4 mirrored "
        "transforms, `false mirror` among the 4 unmirrored; `upright flagged` = an upright, "
        "unmirrored film that gets any orientation flag (the cost on ordinary uploads).",
        "",
        "| source | films | 8-way accuracy | rot 0 turned right | rot 90 | rot 180 | rot 270 "
        "| wrong turns (0/90/180/270) | mirror detected | false mirror | upright flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in [("val (nih + kermany)", res["val"]), *res["tables"].items()]:
        rot = t["rotation"]
        wrong = "/".join(f"{rot[d]['wrong_turn']:.3f}" for d in ("0", "90", "180", "270"))
        lines.append(
            f"| {name} | {t['films']} | {_rate(t['accuracy_8way'])} | "
            + " | ".join(_rate(rot[d]["correct"]) for d in ("0", "90", "180", "270"))
            + f" | {wrong} | {_rate(t['mirror_detected'])} | {_rate(t['mirror_false_flag'])} "
            f"| {_rate(t['upright_flagged'])} |"
        )
    lines += [
        "",
        "## Confusion (pooled test splits, argmax, rows = true transform)",
        "",
        "| true \\ predicted | " + " | ".join(res["labels"]) + " |",
        "|---|" + "---|" * len(res["labels"]),
    ]
    for label, row in zip(res["labels"], res["confusion_test"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    cfg = res["config"]
    lines += [
        "",
        "## Training",
        "",
        f"Self-supervised on the train splits of nih-cxr14 and kermany-pediatric "
        f"({cfg['train_films']} films, {cfg['transforms_per_film_per_epoch']} random transforms "
        f"per film per epoch), {cfg['params']} parameters, {cfg['epochs']} epochs, best epoch "
        f"{res['best_epoch']} by val 8-way accuracy, {res['train_seconds']} s on the shared "
        "CPU. tbx11k and hannover-covid19 were never trained or tuned on.",
        "",
        f"ONNX parity vs Keras: max |diff| {res['parity']['max_abs_diff']} on "
        f"{res['parity']['images']} inputs (ok={res['parity']['ok']}).",
        "",
        "Plots: `curves.png` (loss / accuracy per epoch), `confusion_test.png`.",
        "",
    ]
    return "\n".join(lines)


def write_orientation(folder: Path, res: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    hist = res["history"]
    plot_history(
        [{"train loss": hist["loss"]}, {"train acc": hist["acc"], "val acc": hist["val_acc"]}],
        folder / "curves.png",
        "chest-orientation training",
    )
    plot_confusion(
        res["confusion_test"], res["labels"], folder / "confusion_test.png", "orientation test"
    )
    write_card(folder, orientation_card(res))
    (folder / "report.md").write_text(orientation_report(res))
