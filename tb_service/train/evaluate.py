"""Evaluation of a trained chest-abnormality network: temperature and threshold on ``val``,
test figures with CIs, the subtype head, and TBX11K (sensitivity and CAM localisation against
the lesion boxes). TensorFlow only where a Keras model is passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from shared.settings import default_data_dir
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.cache import CHEST_SETS, KER, NIH, ChestCache, build_chest_cache
from tb_service.train.data import read_boxes
from tb_service.train.results import ABN_NAME, model_folder

TBX = "tbx11k"


class Located(Protocol):
    """What the CAM localisation reads of a cache (ChestCache or CropCache)."""

    dataset: NDArray[np.str_]
    path: NDArray[np.str_]
    crop_box: NDArray[np.int32]
    orig_size: NDArray[np.int32]


def chest_cam(features: NDArray[Any], model: Any) -> NDArray[np.float32]:
    """ReLU(features . (w_abnormal - w_normal)), as the exported graph computes it."""
    w = np.asarray(model.get_layer("abn_dense").get_weights()[0], np.float32)
    cam = np.einsum("nhwc,c->nhw", features.astype(np.float32), w[:, 1] - w[:, 0])
    out: NDArray[np.float32] = np.maximum(cam, 0).astype(np.float32)
    return out


def _cell_centre(c: Located, i: int, grid: tuple[int, ...], row: Any, col: Any) -> tuple[Any, Any]:
    """Centre(s) of CAM cell(s) of image ``i`` as fractions of the original image (as the
    lesion boxes are): the CAM grid spans the lung crop box."""
    width, height = (int(v) for v in c.orig_size[i])
    x0, y0, x1, y1 = (int(v) for v in c.crop_box[i])
    rows, cols = grid
    return (
        (x0 + (col + 0.5) / cols * (x1 - x0)) / width,
        (y0 + (row + 0.5) / rows * (y1 - y0)) / height,
    )


def tbx_localisation(
    c: Located, cam: NDArray[Any], data_dir: Path | None
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]]:
    """Per TBX11K image: is the CAM peak inside a lesion box; the share of the crop box a
    lesion box covers (chance level of a random peak); has the image any box."""
    boxes = read_boxes(Path(data_dir or default_data_dir()) / TBX)
    hits, chance, has_box = [], [], []
    for i in (int(j) for j in np.flatnonzero(c.dataset == TBX)):
        image_boxes = boxes.get(f"tb/{Path(str(c.path[i])).name}", [])
        has_box.append(bool(image_boxes))
        heat = cam[i]
        rows, cols = heat.shape
        peak_row, peak_col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        px, py = _cell_centre(c, i, heat.shape, peak_row, peak_col)
        hits.append(any(b[0] <= px <= b[2] and b[1] <= py <= b[3] for b in image_boxes))
        # Chance: fraction of CAM cells (within the crop) whose centre lies in a box.
        cx, cy = _cell_centre(c, i, heat.shape, *np.mgrid[0:rows, 0:cols])
        inside = np.zeros((rows, cols), bool)
        for b in image_boxes:
            inside |= (cx >= b[0]) & (cx <= b[2]) & (cy >= b[1]) & (cy <= b[3])
        chance.append(float(inside.mean()))
    return np.array(hits), np.array(chance), np.array(has_box)


def evaluate_chest(
    fit: Any, c: ChestCache, data_dir: Path | None, *, with_tbx: bool = True
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Results (JSON-ready) and per-image predictions of a trained network on every split."""
    from tb_service.train.fit import predict_chest

    out = predict_chest(fit.model, c.x)
    logits = out["abn_logits"].astype(np.float64)
    y = c.abnormal.astype(int)
    both = list(CHEST_SETS)
    val, test = c.where("val", both), c.where("test", both)
    temperature = M.fit_temperature(logits[val], y[val])
    p_raw = M.softmax(logits)[:, 1]
    p = M.softmax(logits / temperature)[:, 1]
    t = M.threshold_for_sensitivity(y[val], p[val], 0.90)
    res: dict[str, Any] = {
        "temperature": temperature,
        "threshold": t,
        "val": M.bootstrap(y[val], p[val], t),
        "test": M.bootstrap(y[test], p[test], t),
    }
    for ds, key in ((NIH, "test_nih"), (KER, "test_kermany")):
        m = c.where("test", [ds])
        res[key] = M.bootstrap(y[m], p[m], t)
    ece_test_raw, _ = M.reliability(y[test], p_raw[test])
    ece_test_cal, table = M.reliability(y[test], p[test])
    ece_val_raw, _ = M.reliability(y[val], p_raw[val])
    ece_val_cal, _ = M.reliability(y[val], p[val])
    res["calibration"] = {
        "temperature": temperature,
        "ece_test_before": ece_test_raw,
        "ece_test_after": ece_test_cal,
        "ece_val_before": ece_val_raw,
        "ece_val_after": ece_val_cal,
        "nll_val_before": M.nll(logits[val], y[val], 1.0),
        "nll_val_after": M.nll(logits[val], y[val], temperature),
        "reliability_test_after": table,
    }
    # Subtype head: Kermany pneumonia images only (viral = positive class).
    sub = out["sub"][:, 1]
    sub_test = c.where("test", [KER]) & (c.subtype >= 0)
    sub_val = c.where("val", [KER]) & (c.subtype >= 0)
    res["subtype_test"] = M.bootstrap(c.subtype[sub_test], sub[sub_test], 0.5)
    res["subtype_val_auc"] = M.auc_ci(c.subtype[sub_val], sub[sub_val])
    preds: dict[str, NDArray[Any]] = {"p": p, "p_raw": p_raw, "sub": sub, "logits": logits}
    if with_tbx and (c.dataset == TBX).any():
        tb = c.dataset == TBX
        hits, chance, has_box = tbx_localisation(c, chest_cam(out["features"], fit.model), data_dir)
        flagged = p[tb] >= t
        res["tbx11k"] = {
            "n": int(tb.sum()),
            "flagged_abnormal_share": M.proportion_ci(flagged),
            "heatmap_peak_in_lesion_box": M.proportion_ci(hits[has_box]),
            "heatmap_peak_in_lesion_box_flagged_only": M.proportion_ci(hits[has_box & flagged]),
            "chance_level_random_peak_in_crop": float(round(float(chance[has_box].mean()), 4)),
            "images_with_boxes": int(has_box.sum()),
        }
        preds["tbx_hits"] = hits
    return res, preds


def fallback_share(c: ChestCache, m: NDArray[np.bool_]) -> float:
    """Share of images whose lung crop fell back to the whole image."""
    box, size = c.crop_box[m], c.orig_size[m]
    full = (
        (box[:, 0] == 0) & (box[:, 1] == 0) & (box[:, 2] == size[:, 0]) & (box[:, 3] == size[:, 1])
    )
    return float(round(float(full.mean()), 3)) if m.any() else float("nan")


def tbx_diagnostics(data_dir: Path | None = None) -> dict[str, Any]:
    """Where the shipped ONNX model's CAM peaks fall on TBX11K (runs the committed artifact)."""
    import onnxruntime as ort

    c = build_chest_cache(data_dir)
    sess = ort.InferenceSession(
        str(model_folder(ABN_NAME) / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = c.x.astype(np.float32)
    cams = [sess.run(["cam"], {"image": x[i : i + 64]})[0] for i in range(0, len(x), 64)]
    cam_all = np.concatenate(cams)
    hits, chance, has_box = tbx_localisation(c, cam_all, data_dir)
    cam = cam_all[c.dataset == TBX]
    n, rows, cols = cam.shape
    flat = cam.reshape(n, -1).argmax(axis=1)
    peak_row, peak_col = flat // cols, flat % cols
    border = (peak_row == 0) | (peak_row == rows - 1) | (peak_col == 0) | (peak_col == cols - 1)
    zero = cam.reshape(n, -1).max(axis=1) <= 0
    return {
        "model": "committed model.onnx",
        "heatmap_peak_in_lesion_box": M.proportion_ci(hits[has_box]),
        "chance_level_random_peak_in_crop": float(round(float(chance[has_box].mean()), 4)),
        "peak_on_border_cell_share": float(round(float(border.mean()), 4)),
        "all_zero_cam_share": float(round(float(zero.mean()), 4)),
        "peak_row_histogram_top_to_bottom": np.bincount(peak_row, minlength=rows).tolist(),
        "peak_col_histogram_left_to_right": np.bincount(peak_col, minlength=cols).tolist(),
    }
