"""The training commands: gate, abnormality (+ subtype head), experiments, baselines.

Results (JSON + predictions) go to ``var/results``; models, cards, reports and plots to
``tb_service/models/<name>/<version>/``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.model import file_sha256
from shared.settings import REPO_ROOT
from tb_service.preprocess import GATE_INPUT_SIZE, INPUT_SIZE
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.cache import CHEST_SETS, build_chest_cache, build_gate_cache
from tb_service.train.data import read_boxes

log = logging.getLogger("irmi.train")

RESULTS = REPO_ROOT / "var" / "results"
MODELS = REPO_ROOT / "tb_service" / "models"
NIH, KER = "nih-cxr14", "kermany-pediatric"
GATE_NAME, ABN_NAME, VERSION = "chest-gate", "chest-abnormality", "1"


def save_json(name: str, obj: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(obj, indent=2, default=_default))
    return path


def load_json(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


# ---------------------------------------------------------------------------------- baselines


def cmd_baselines(data_dir: Path | None = None) -> dict[str, Any]:
    from tb_service.train.baselines import shortcut_baselines

    c = build_chest_cache(data_dir)
    res = shortcut_baselines(c)
    save_json("baselines", res)
    log.info("baselines: %s", json.dumps(res))
    return res


# --------------------------------------------------------------------------------------- gate


def cmd_gate(data_dir: Path | None = None, epochs: int = 8) -> dict[str, Any]:
    from tb_service.train.export import gate_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads, predict_gate, train_gate

    limit_threads()
    g = build_gate_cache(data_dir)
    tr, va, te = (g.split == s for s in ("train", "val", "test"))
    fit = train_gate(g.x[tr], g.y[tr], g.x[va], g.y[va], size=GATE_INPUT_SIZE, epochs=epochs)
    p = predict_gate(fit.model, g.x)[:, 1]
    # Threshold on val: let >= 99% of val chest X-rays through, never above 0.5.
    t = min(0.5, M.threshold_for_sensitivity(g.y[va], p[va], 0.99))
    test = M.bootstrap(g.y[te], p[te], t)
    per_source = {}
    for s in np.unique(g.source):
        m = te & (g.source == s) if s != "tbx11k" else g.source == s
        if m.any():
            acc = (p[m] >= t) == (g.y[m] == 1)
            per_source[str(s)] = {
                "n": int(m.sum()),
                "label": "chest" if int(g.y[m][0]) == 1 else "not_chest",
                "correct_share": float(round(float(acc.mean()), 4)),
            }
    folder = MODELS / GATE_NAME / VERSION
    onnx_path = folder / "model.onnx"
    fn = gate_graph(fit.model, GATE_INPUT_SIZE)
    to_onnx(fn, onnx_path)
    par = parity(fn, onnx_path, g.x[te][:96])
    res = {
        "threshold": t,
        "test": test,
        "test_per_source": per_source,
        "val_auc": M.auc_ci(g.y[va], p[va]),
        "history": fit.history,
        "best_epoch": fit.best_epoch,
        "train_seconds": round(fit.seconds, 1),
        "config": fit.config,
        "parity": par,
        "counts": {
            s: {
                str(src): int(((g.split == s) & (g.source == src)).sum())
                for src in np.unique(g.source)
            }
            for s in ("train", "val", "test", "eval")
        },
    }
    save_json("gate", res)
    np.savez(RESULTS / "gate_preds.npz", p=p, y=g.y, split=g.split, source=g.source)
    from tb_service.train.report import write_gate

    write_gate(folder, res)
    return res


# -------------------------------------------------------------------------------- abnormality


def _chest_xy(c: Any, split: str, datasets: list[str]) -> tuple[NDArray[np.bool_], Any]:
    m = c.where(split, datasets)
    return m, c


def train_variant(
    c: Any,
    train_sets: list[str],
    *,
    backbone: str,
    activation: str = "softmax",
    epochs: int,
    tag: str,
    val_sets: list[str] | None = None,
) -> Any:
    from tb_service.train.fit import train_chest

    tr = c.where("train", train_sets)
    va = c.where("val", val_sets or train_sets)
    return train_chest(
        c.x[tr],
        c.abnormal[tr],
        c.subtype[tr],
        c.x[va],
        c.abnormal[va],
        size=INPUT_SIZE,
        backbone=backbone,  # type: ignore[arg-type]
        activation=activation,  # type: ignore[arg-type]
        epochs=epochs,
        tag=tag,
    )


def _cam(features: NDArray[Any], model: Any) -> NDArray[np.float32]:
    w = np.asarray(model.get_layer("abn_dense").get_weights()[0], np.float32)
    cam = np.maximum(np.einsum("nhwc,c->nhw", features.astype(np.float32), w[:, 1] - w[:, 0]), 0)
    return cam.astype(np.float32)


def tbx_localisation(
    c: Any, cam: NDArray[Any], data_dir: Path | None
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.bool_]]:
    """Per TBX11K image: is the CAM peak inside a lesion box; the share of the crop box a
    lesion box covers (chance level of a random peak); has the image any box."""
    from shared.settings import default_data_dir

    boxes = read_boxes(Path(data_dir or default_data_dir()) / "tbx11k")
    idx = np.flatnonzero(c.dataset == "tbx11k")
    hits, chance, has = [], [], []
    for i in idx:
        rel = f"tb/{Path(str(c.path[i])).name}"
        bx = boxes.get(rel, [])
        has.append(bool(bx))
        w, h = (int(v) for v in c.orig_size[i])
        x0, y0, x1, y1 = (int(v) for v in c.crop_box[i])
        hm = cam[i]
        hh, hw = hm.shape
        iy, ix = np.unravel_index(int(np.argmax(hm)), hm.shape)
        px = (x0 + (ix + 0.5) / hw * (x1 - x0)) / w
        py = (y0 + (iy + 0.5) / hh * (y1 - y0)) / h
        hits.append(any(b[0] <= px <= b[2] and b[1] <= py <= b[3] for b in bx))
        # Chance: fraction of CAM cells (within the crop) whose centre lies in a box.
        gy, gx = np.mgrid[0:hh, 0:hw]
        cx = (x0 + (gx + 0.5) / hw * (x1 - x0)) / w
        cy = (y0 + (gy + 0.5) / hh * (y1 - y0)) / h
        inside = np.zeros((hh, hw), bool)
        for b in bx:
            inside |= (cx >= b[0]) & (cx <= b[2]) & (cy >= b[1]) & (cy <= b[3])
        chance.append(float(inside.mean()))
    return np.array(hits), np.array(chance), np.array(has)


def evaluate_chest(
    fit: Any, c: Any, data_dir: Path | None, *, with_tbx: bool = True
) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    from tb_service.train.fit import predict_chest

    out = predict_chest(fit.model, c.x)
    logits = out["abn_logits"].astype(np.float64)
    y = c.abnormal.astype(int)
    both = list(CHEST_SETS)
    va, te = c.where("val", both), c.where("test", both)
    temperature = M.fit_temperature(logits[va], y[va])
    p_raw = M.softmax(logits)[:, 1]
    p = M.softmax(logits / temperature)[:, 1]
    t = M.threshold_for_sensitivity(y[va], p[va], 0.90)
    res: dict[str, Any] = {
        "temperature": temperature,
        "threshold": t,
        "val": M.bootstrap(y[va], p[va], t),
        "test": M.bootstrap(y[te], p[te], t),
    }
    for ds, key in ((NIH, "test_nih"), (KER, "test_kermany")):
        m = c.where("test", [ds])
        res[key] = M.bootstrap(y[m], p[m], t)
    ece_raw, _ = M.reliability(y[te], p_raw[te])
    ece_cal, table = M.reliability(y[te], p[te])
    ece_val_raw, _ = M.reliability(y[va], p_raw[va])
    ece_val_cal, _ = M.reliability(y[va], p[va])
    res["calibration"] = {
        "temperature": temperature,
        "ece_test_before": ece_raw,
        "ece_test_after": ece_cal,
        "ece_val_before": ece_val_raw,
        "ece_val_after": ece_val_cal,
        "nll_val_before": M.nll(logits[va], y[va], 1.0),
        "nll_val_after": M.nll(logits[va], y[va], temperature),
        "reliability_test_after": table,
    }
    # Subtype head: Kermany pneumonia images only (viral = positive class).
    sub = out["sub"][:, 1]
    ms = c.where("test", [KER]) & (c.subtype >= 0)
    mv = c.where("val", [KER]) & (c.subtype >= 0)
    res["subtype_test"] = M.bootstrap(c.subtype[ms], sub[ms], 0.5)
    res["subtype_val_auc"] = M.auc_ci(c.subtype[mv], sub[mv])
    preds: dict[str, NDArray[Any]] = {"p": p, "p_raw": p_raw, "sub": sub, "logits": logits}
    if with_tbx and (c.dataset == "tbx11k").any():
        tb = c.dataset == "tbx11k"
        cam = _cam(out["features"], fit.model)
        hits, chance, has = tbx_localisation(c, cam, data_dir)
        flagged = p[tb] >= t
        res["tbx11k"] = {
            "n": int(tb.sum()),
            "flagged_abnormal_share": M.proportion_ci(flagged),
            "heatmap_peak_in_lesion_box": M.proportion_ci(hits[has]),
            "heatmap_peak_in_lesion_box_flagged_only": M.proportion_ci(hits[has & flagged]),
            "chance_level_random_peak_in_crop": float(round(float(chance[has].mean()), 4)),
            "images_with_boxes": int(has.sum()),
        }
        preds["tbx_hits"] = hits
    return res, preds


def _fallback_share(c: Any, m: NDArray[np.bool_]) -> float:
    """Share of images whose lung crop fell back to the whole image."""
    box, size = c.crop_box[m], c.orig_size[m]
    full = (
        (box[:, 0] == 0) & (box[:, 1] == 0) & (box[:, 2] == size[:, 0]) & (box[:, 3] == size[:, 1])
    )
    return float(round(float(full.mean()), 3)) if m.any() else float("nan")


def cmd_abnormality(
    data_dir: Path | None = None,
    epochs: int = 12,
    backbones: tuple[str, ...] = ("vgg", "mobilenet"),
) -> dict[str, Any]:
    from tb_service.train.export import chest_graph, parity, to_onnx
    from tb_service.train.fit import limit_threads

    limit_threads()
    c = build_chest_cache(data_dir)
    both = list(CHEST_SETS)
    comparison: dict[str, Any] = {}
    fits: dict[str, Any] = {}
    for bb in backbones:
        fit = train_variant(c, both, backbone=bb, epochs=epochs, tag=f"abn-{bb}")
        fits[bb] = fit
        comparison[bb] = {
            "val_auc_best_epoch": fit.best_val_auc,
            "best_epoch": fit.best_epoch,
            "train_seconds": round(fit.seconds, 1),
            "params": fit.config["params"],
            "history": fit.history,
        }
        save_json("backbones", comparison)
    chosen = max(fits, key=lambda k: fits[k].best_val_auc)
    fit = fits[chosen]
    for k in list(fits):
        if k != chosen:
            del fits[k]
    res, preds = evaluate_chest(fit, c, data_dir)
    folder = MODELS / ABN_NAME / VERSION
    onnx_path = folder / "model.onnx"
    fn = chest_graph(fit.model, INPUT_SIZE, res["temperature"])
    to_onnx(fn, onnx_path)
    te = c.where("test", both)
    res["parity"] = parity(fn, onnx_path, c.x[te][:96])
    res.update(
        {
            "backbone": chosen,
            "backbone_comparison": {
                k: {kk: vv for kk, vv in v.items() if kk != "history"}
                for k, v in comparison.items()
            },
            "history": fit.history,
            "best_epoch": fit.best_epoch,
            "train_seconds": round(sum(v["train_seconds"] for v in comparison.values()), 1),
            "config": fit.config,
            "counts": {
                s: {ds: int(c.where(s, [ds]).sum()) for ds in (*both, "tbx11k")}
                for s in ("train", "val", "test", "eval")
            },
            "lung_crop_fallback_share": {
                ds: _fallback_share(c, c.dataset == ds) for ds in (*both, "tbx11k")
            },
        }
    )
    save_json("abnormality", res)
    np.savez(
        RESULTS / "abnormality_preds.npz",
        y=c.abnormal,
        split=c.split,
        dataset=c.dataset,
        subtype=c.subtype,
        **preds,
    )
    from tb_service.train.report import write_abnormality

    write_abnormality(folder, res)
    return res


# -------------------------------------------------------------------------------- experiments


def cmd_experiments(
    data_dir: Path | None = None, epochs: int = 8, backbone: str | None = None
) -> dict[str, Any]:
    """Cross-dataset generalisation and the output-activation table (shorter runs)."""
    from tb_service.train.fit import limit_threads, predict_chest

    limit_threads()
    c = build_chest_cache(data_dir)
    main = load_json("abnormality") or {}
    bb = backbone or main.get("backbone", "vgg")
    y = c.abnormal.astype(int)
    res: dict[str, Any] = load_json("experiments") or {}
    res.update({"backbone": bb, "epochs": epochs})
    cross = res.setdefault("cross_dataset", {})
    for train_set, other in ((NIH, KER), (KER, NIH)):
        fit = train_variant(c, [train_set], backbone=bb, epochs=epochs, tag=f"cross-{train_set}")
        p = predict_chest(fit.model, c.x)["abn"][:, 1]
        cross[f"train_{train_set}"] = {
            "test_same": M.auc_ci(y[c.where("test", [train_set])], p[c.where("test", [train_set])]),
            "test_other": M.auc_ci(y[c.where("test", [other])], p[c.where("test", [other])]),
            "other": other,
            "train_seconds": round(fit.seconds, 1),
            "best_epoch": fit.best_epoch,
        }
        save_json("experiments", res)
    acts = res.setdefault("activations", {})
    both = list(CHEST_SETS)
    te = c.where("test", both)
    for act in ("softmax", "relu", "softplus"):
        fit = train_variant(c, both, backbone=bb, activation=act, epochs=epochs, tag=f"act-{act}")
        p = predict_chest(fit.model, c.x)["abn"][:, 1]
        st = M.bootstrap(y[te], p[te], 0.5)
        acts[act] = {
            "val_auc": fit.best_val_auc,
            "test_auc": st["auc"],
            "test_accuracy_at_0.5": st["accuracy"],
            "test_sensitivity_at_0.5": st["sensitivity"],
            "test_specificity_at_0.5": st["specificity"],
            "final_train_loss": fit.history["loss"][-1],
            "train_seconds": round(fit.seconds, 1),
        }
        save_json("experiments", res)
    return res


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha(path: Path) -> str:
    return file_sha256(path)


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args, **kw), time.perf_counter() - start


def cmd_tbx_diagnostics(data_dir: Path | None = None) -> dict[str, Any]:
    """Where the shipped ONNX model's CAM peaks fall on TBX11K (runs the committed artifact)."""
    import onnxruntime as ort

    c = build_chest_cache(data_dir)
    sess = ort.InferenceSession(
        str(MODELS / ABN_NAME / VERSION / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = c.x.astype(np.float32)
    cams, probs = [], []
    for i in range(0, len(x), 64):
        p, cam = sess.run(["probs", "cam"], {"image": x[i : i + 64]})
        probs.append(p[:, 1])
        cams.append(cam)
    cam_all = np.concatenate(cams)
    hits, chance, has = tbx_localisation(c, cam_all, data_dir)
    tb = c.dataset == "tbx11k"
    cam = cam_all[tb]
    n, hh, hw = cam.shape
    flat = cam.reshape(n, -1).argmax(axis=1)
    py, px = flat // hw, flat % hw
    border = (py == 0) | (py == hh - 1) | (px == 0) | (px == hw - 1)
    zero = cam.reshape(n, -1).max(axis=1) <= 0
    res = {
        "model": "committed model.onnx",
        "heatmap_peak_in_lesion_box": M.proportion_ci(hits[has]),
        "chance_level_random_peak_in_crop": float(round(float(chance[has].mean()), 4)),
        "peak_on_border_cell_share": float(round(float(border.mean()), 4)),
        "all_zero_cam_share": float(round(float(zero.mean()), 4)),
        "peak_row_histogram_top_to_bottom": np.bincount(py, minlength=hh).tolist(),
        "peak_col_histogram_left_to_right": np.bincount(px, minlength=hw).tolist(),
    }
    save_json("tbx_diagnostics", res)
    return res
