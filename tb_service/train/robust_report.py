"""The robust screen's ``report.md`` (chest-abnormality/3): every row with the earlier models
(chest-abnormality/1 and /2) beside it, and a plain statement of which goals are reached on
what can be measured here. TensorFlow-free."""

from __future__ import annotations

from typing import Any

from tb_service.preprocess import DETAIL_SIDE, WORKING_SIDE
from tb_service.train.reports import fmt
from tb_service.train.robust_card import INVARIANCE_NOTE, previous_rows
from tb_service.train.served_checks import NEW

NIH, KER = "nih-cxr14", "kermany-pediatric"
GOAL_SPEC, GOAL_AUC, GOAL_PED = 0.70, 0.85, 0.95


def _v(m: dict[str, Any] | None) -> float | None:
    if not m or m.get("value") is None:
        return None
    return float(m["value"])


def _rate(m: dict[str, Any] | None) -> str:
    if not m:
        return "n/a"
    n = m.get("n")
    return f"{fmt(m)}" + (f" (n={n})" if n is not None else "")


def _said(ok: bool) -> str:
    return "reached" if ok else "not reached"


def _goals(res: dict[str, Any]) -> list[str]:
    loso = res["loso"]
    lines = ["## Goals, on what can be measured here", ""]
    for key, label in (
        ("train_nih-cxr14", "NIH -> Kermany"),
        ("train_kermany-pediatric", "Kermany -> NIH"),
    ):
        row = loso.get(key)
        if not row:
            continue
        auc = _v(row["test_auc_other"])
        spec = _v(row["other_test"]["specificity"])
        sens = _v(row["other_test"]["sensitivity"])
        ok = (
            auc is not None
            and spec is not None
            and sens is not None
            and (auc >= GOAL_AUC and spec >= GOAL_SPEC and sens >= 0.90)
        )
        lines.append(
            f"- Other hospital ({label}): AUC {auc:.3f}, sensitivity {sens:.3f}, specificity "
            f"{spec:.3f} at the training source's own val threshold: goal (AUC >= {GOAL_AUC}, "
            f"specificity >= {GOAL_SPEC} at sensitivity >= 0.90) **{_said(ok)}**."
        )
    ker = _v(res["test_kermany"]["auc"]) or 0.0
    enlarged = (res["served"].get("kermany_test_enlarged_auc") or {}).get("x4", {})
    big = _v(enlarged.get(NEW))
    lines.append(
        f"- Pediatric source: test AUC {ker:.3f} on the 384 px copies"
        + (
            f", {big:.3f} on the same films enlarged 4x (a stand-in for the full-resolution "
            "originals, which are not here)"
            if big is not None
            else ""
        )
        + f": goal (AUC >= {GOAL_PED}) **{_said(ker >= GOAL_PED and (big or 1) >= GOAL_PED)}** "
        "on what we have; the originals themselves were not measured."
    )
    hann = res.get("hannover")
    if hann:
        lines.append(
            f"- hannover-covid19 (all positive, a hospital never trained on): flagged "
            f"{_rate(hann['flagged_per_image'])} per image, "
            f"{_rate(hann['flagged_per_patient_any_film'])} per patient. It has no normals, so "
            "it says nothing about specificity there."
        )
    lines.append("")
    return lines


Olds = dict[str, dict[str, Any]]
"""The earlier models' rows (:func:`previous_rows`), keyed by their column ("v1", "v2")."""


def _header(*cells: str) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _test_rows(res: dict[str, Any], olds: Olds, base: dict[str, Any]) -> list[str]:
    lines = [
        "## In-distribution test (shortcut baselines on the same split)",
        "",
        *_header(
            "test set",
            *(f"{k} AUC" for k in olds),
            f"{NEW} AUC",
            f"{NEW} sensitivity",
            f"{NEW} specificity",
            "HOG + LR AUC",
        ),
    ]
    for name, key, hog in (
        ("NIH + Kermany", "test", "both_hog_logreg"),
        ("NIH", "test_nih", "nih_hog128_logreg"),
        ("Kermany", "test_kermany", "kermany_hog128_logreg"),
    ):
        new = res[key]
        lines.append(
            f"| {name} | "
            + "".join(f"{fmt((o.get(key) or {}).get('auc'))} | " for o in olds.values())
            + f"{fmt(new['auc'])} | "
            f"{fmt(new['sensitivity'])} | {fmt(new['specificity'])} | {fmt(base.get(hog))} |"
        )
    lines += [
        "",
        "Kermany shortcuts on the same split: original image area "
        f"{fmt(base.get('kermany_original_area'))}, aspect ratio "
        f"{fmt(base.get('kermany_aspect_ratio'))}; NIH raw 16-bin histogram "
        f"{fmt(base.get('nih_raw_histogram16_logreg'))}. (Raw-image features: the same "
        "figures as chest-abnormality/1's card, measured by `tb_service.train.baselines` on "
        "these splits.)",
        "",
        "Earlier models: "
        + "; ".join(f"{k} = {o.get('preprocessing')}" for k, o in olds.items())
        + f". {NEW} adds `detail_side` ({DETAIL_SIDE} px) before the working side.",
        "",
    ]
    return lines


def _loso_rows(res: dict[str, Any], olds: Olds, base: dict[str, Any]) -> list[str]:
    lines = [
        "## Leave one source out (test split of the source not trained on)",
        "",
        "Trained on one source's `train`, threshold for sensitivity >= 0.90 on its own `val`, "
        "read on the other source's `test`: specificity = the other source's normals.",
        "",
        *_header(
            "trained on",
            "tested on",
            *(f"{k} AUC" for k in olds),
            f"{NEW} AUC",
            f"{NEW} sensitivity",
            f"{NEW} specificity",
            *(f"{k} specificity" for k, o in olds.items() if "loso_other_specificity" in o),
            "HOG + LR AUC",
            f"{NEW} AUC on its own test",
        ),
    ]
    hog = {"train_nih-cxr14": "hog_nih_to_kermany", "train_kermany-pediatric": "hog_kermany_to_nih"}
    for key, row in res["loso"].items():
        lines.append(
            f"| {key.removeprefix('train_')} | {row['other']} | "
            + "".join(f"{fmt(o['loso_test_auc_other'].get(key))} | " for o in olds.values())
            + f"{fmt(row['test_auc_other'])} | "
            f"{_rate(row['other_test']['sensitivity'])} | "
            f"{_rate(row['other_test']['specificity'])} | "
            + "".join(
                f"{_rate(o['loso_other_specificity'].get(key))} | "
                for o in olds.values()
                if "loso_other_specificity" in o
            )
            + f"{fmt(base.get(hog[key]))} | "
            f"{fmt(row['test_auc_same'])} |"
        )
    lines.append("")
    return lines


def _row(label: str, earlier: list[str], new: str) -> str:
    """One table row: the label, each earlier model's cell, the new model's."""
    return f"| {label} | " + "".join(f"{cell} | " for cell in earlier) + f"{new} |"


def _olds(olds: Olds, part: str, key: str) -> list[str]:
    return [fmt((o.get(part) or {}).get(key)) for o in olds.values()]


def _external_rows(res: dict[str, Any], olds: Olds) -> list[str]:
    lines = ["## External, positive-only sets (evaluation only)", ""]
    hann = res.get("hannover")
    if hann:
        spec = {k: _rate(r["other_test"]["specificity"]) for k, r in res["loso"].items()}
        lines += [
            f"hannover-covid19: {hann['n_images']} films of {hann['n_patients']} patients, all "
            "COVID-19 positive (no normals: the specificity beside it is the LOSO one, the "
            "other source's normals).",
            "",
            *_header("", *olds, NEW),
            _row(
                "flagged per image",
                _olds(olds, "hannover", "flagged_per_image"),
                _rate(hann["flagged_per_image"]),
            ),
            _row(
                "flagged per patient (any film)",
                _olds(olds, "hannover", "flagged_per_patient_any_film"),
                _rate(hann["flagged_per_patient_any_film"]),
            ),
        ]
        for key, label in (
            ("train_nih-cxr14", "NIH-trained on Kermany normals"),
            ("train_kermany-pediatric", "Kermany-trained on NIH normals"),
        ):
            earlier = [
                _rate((o.get("loso_other_specificity") or {}).get(key)) for o in olds.values()
            ]
            lines.append(_row(f"LOSO specificity, {label}", earlier, spec.get(key, "n/a")))
        lines.append("")
    tbx = res.get("tbx11k")
    if tbx:
        chance = [
            str((o.get("tbx11k") or {}).get("chance_level_random_peak_in_crop"))
            for o in olds.values()
        ]
        lines += [
            "tbx11k: 800 TB films (no normals: a flag rate, never a specificity; the model "
            "never saw a TB label).",
            "",
            *_header("", *olds, NEW),
            _row(
                "flagged abnormal",
                _olds(olds, "tbx11k", "flagged_abnormal_share"),
                _rate(tbx["flagged_abnormal_share"]),
            ),
            _row(
                "CAM peak in a lesion box",
                _olds(olds, "tbx11k", "heatmap_peak_in_lesion_box"),
                _rate(tbx["heatmap_peak_in_lesion_box"]),
            ),
            _row(
                "random peak in the same lung crop",
                chance,
                str(tbx["chance_level_random_peak_in_crop"]),
            ),
            "",
        ]
    return lines


def _reliability_rows(res: dict[str, Any], olds: Olds) -> list[str]:
    rel = res["reliability"]
    lines = [
        "## Reliability: outside the validated population",
        "",
        "Distance: Mahalanobis to the nearest training-source mean in the "
        f"{res['population']['dims']}-d embedding, tied Ledoit-Wolf covariance fitted on the "
        "train films of both sources; limit "
        f"= the {res['population']['quantile']:.2f} quantile of the val films (so about "
        f"{1 - res['population']['quantile']:.0%} of val is outside by construction). Outside "
        "means `outside_population` (review recommended), "
        "never `no finding`. chest-abnormality/1 has no embedding: not measured there.",
        "",
        *_header(
            "films",
            *(f"outside by distance ({k})" for k, o in olds.items() if o.get("outside_population")),
            f"outside by distance ({NEW})",
            f"lung-mask reason ({NEW})",
            f"flagged, any reason ({NEW})",
        ),
    ]
    reason = rel.get("preprocessing_reason", {})
    anyr = rel.get("flagged_any_reason", {})
    earlier = [o["outside_population"] for o in olds.values() if o.get("outside_population")]
    lines += [
        f"| {k} | "
        + "".join(f"{_rate(e.get(k))} | " for e in earlier)
        + f"{_rate(v)} | {_rate(reason.get(k))} | {_rate(anyr.get(k))} |"
        for k, v in rel["outside_population"].items()
    ]
    for name, v in (res["served"].get("non_chest_outside_population") or {}).items():
        lines.append(
            f"| {name} (served pipeline) | " + "- | " * len(earlier) + f"{_rate(v)} | - | - |"
        )
    lines += [
        "",
        "Does the distance catch what the model cannot score? Fitted on ONE source only "
        "(its train films, limit on its val), how often it calls each set outside:",
        "",
        "| fitted on | own test | other source's test | tbx11k | hannover-covid19 | other-source "
        "AUC on films it calls inside |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in res["loso"].items():
        op = row.get("outside_population") or {}
        vals = list(op.values())
        cells = [_rate(v) for v in vals] + ["n/a"] * (4 - len(vals))
        lines.append(
            f"| {key.removeprefix('train_')} | "
            + " | ".join(cells[:4])
            + f" | {fmt(row.get('other_test_inside_population_auc'))} |"
        )
    curves = {k: row["limit_curve"] for k, row in res["loso"].items() if row.get("limit_curve")}
    if curves:
        qs = list(next(iter(curves.values())))
        lines += [
            "",
            "Choosing the limit (val splits only): fitted on one source, the share of its own val "
            "films and of the other source's val films called outside, per limit quantile "
            f"(served: {res['population']['quantile']:.2f}).",
            "",
            *_header("fitted on", *(f"q {q}: own val / other val" for q in qs)),
        ]
        for key, cv in curves.items():
            cells = [f"{fmt(cv[q]['own_val'])} / {fmt(cv[q]['other_val'])}" for q in qs]
            lines.append(f"| {key.removeprefix('train_')} | " + " | ".join(cells) + " |")
    caught = [
        (key.removeprefix("train_"), row["other"], _v(list(row["outside_population"].values())[1]))
        for key, row in res["loso"].items()
        if len(row.get("outside_population") or {}) > 1
    ]
    if caught:
        said = "; ".join(
            f"fitted on {a}, it calls {v:.0%} of {b} test outside"
            for a, b, v in caught
            if v is not None
        )
        lines += [
            "",
            f"Reading: {said}. Those films are `review recommended`, never `no finding`. The "
            "rest of the unseen source is called inside and still scored about at chance (the "
            "last column), because the embedding of a network trained to ignore acquisition "
            "does not set every film of a new source apart: the distance catches part of the "
            "cross-source failure, not all of it. It does catch inputs that are not chest films "
            "(mammograms, synthetic images). A site's own validation run remains the check.",
        ]
    hann = res.get("hannover") or {}
    if "inside_population_flagged_per_image" in hann:
        lines += [
            "",
            "hannover-covid19 films inside the population, flagged abnormal: "
            f"{_rate(hann['inside_population_flagged_per_image'])}.",
        ]
    lines.append("")
    return lines


def robust_report(res: dict[str, Any], base: dict[str, Any]) -> str:
    olds = previous_rows(res["served"])
    t = float(res["threshold"])
    served = res["served"]
    lat = served.get("latency_ms_512px", {})
    lines = [
        f"# chest-abnormality {NEW}: a screen trained for robustness (variant {res['variant']})",
        "",
        f"{res['variant_description']}. Every film resampled to {DETAIL_SIDE} px long side "
        f"(`detail_side`: the finest detail any later step sees, so a half-size copy scores "
        f"as the original), then to the working resolution {WORKING_SIDE} px (the smallest "
        f"source), lung crop `{res['crop_stage']}`, 128 px input, random init, CPU. "
        f"Variant taken from {res.get('chosen_by', 'the search (search.json)')}; the search "
        "compares recipes by leave-one-source-out validation on `val` only "
        "([search.md](../search.md)); "
        "calibration and threshold on `val`; figures on `test`; tbx11k and hannover-covid19 "
        "evaluation only. v1 = chest-abnormality/1 (512 px working side, heuristic crop, no "
        "balancing, mild augmentation); v2 = chest-abnormality/2 (this recipe and crop, without "
        "`detail_side`). All CIs: 95% percentile bootstrap (1000 resamples).",
        "",
        f"Operating point: p_abnormal >= **{t:.4f}** (score {100 * t:.1f} of 100), chosen on val "
        f"for sensitivity >= 0.90; on test: sensitivity {_rate(res['test_rates']['sensitivity'])}, "
        f"specificity {_rate(res['test_rates']['specificity'])}.",
        "",
    ]
    search_keys = {
        r.get("crop_key") for r in ((res.get("search") or {}).get("runs") or {}).values()
    }
    if search_keys and res["crop_key"] not in search_keys:
        lines += [
            "The search ran on other crops (the heuristic `lung_crop`, before the lung "
            "segmentation landed); this model's runs, its leave-one-source-out ones included, "
            f"were retrained on the `{res['crop_stage']}` crops with the recipe it chose.",
            "",
        ]
    lines += _goals(res)
    lines += _test_rows(res, olds, base)
    lines += _loso_rows(res, olds, base)
    lines += _external_rows(res, olds)
    lines += _reliability_rows(res, olds)
    enlarged = served.get("kermany_test_enlarged_auc") or {}
    if enlarged:
        lines += [
            "## Resolution: Kermany test films enlarged (served pipelines)",
            "",
            *_header("size", *(f"{k} AUC" for k in next(iter(enlarged.values())))),
        ]
        lines += [
            f"| {k} | " + " | ".join(fmt(a) for a in v.values()) + " |" for k, v in enlarged.items()
        ]
        lines.append("")
    cal = res["calibration"]
    lines += [
        "## Calibration, export, cost",
        "",
        f"Calibration on val: temperature T = {res['temperature']:.3f} and a shift of the "
        f"abnormal logit by {res.get('logit_bias', 0.0):+.3f}, both minimising the val NLL "
        "(the raw outputs of a network trained on balanced, augmented batches are biased: a "
        "temperature alone left the test ECE at about 0.23). The 0-100 score is calibrated to "
        "a population like NIH + Kermany val, not to a screening population; ECE test "
        f"{cal['ece_test_before']:.3f} -> {cal['ece_test_after']:.3f}. Subtype head (Kermany "
        "test pneumonia, viral positive): "
        f"AUC {fmt(res['subtype_test']['auc'])}.",
        f"ONNX (tf2onnx) vs Keras on {res['parity']['images']} test images: max |diff| "
        f"{res['parity']['max_abs_diff']} (ok={res['parity']['ok']}).",
        f"Served chest path on 512 px NIH films, one ONNX run per film: preprocessing "
        f"{lat.get('preprocess_median_ms')} ms + ONNX {lat.get('onnx_median_ms')} ms (median, one "
        "thread, measured once by the training command on the shared CPU; decode excluded).",
        "",
        "## Invariance and orientation",
        "",
        INVARIANCE_NOTE,
        "",
        "Plots: `curves.png`, `roc_test.png`, `confusion_test.png`, `reliability.png`.",
        "",
    ]
    return "\n".join(lines)
