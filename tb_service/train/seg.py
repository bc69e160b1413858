"""``python -m tb_service.train lung-seg``: train, choose, export and evaluate the lung
segmentation model on ``lung-masks`` (patient-level splits as shipped), then survey how often
its masks are plausible on the chest sources (:mod:`tb_service.train.seg_survey`) and write
``tb_service/models/lung-seg/1/`` (:mod:`tb_service.train.seg_publish`).

Train on train, choose the epoch and the mask threshold on val, report on test. Dice and IoU
are measured at the film's original resolution (the mask resized back), as the crop uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.train.evaluation import Arr, Estimate, bootstrap_ci
from tb_service.lungseg import SEG_INPUT_SIZE
from tb_service.train.results import load_json, save_json
from tb_service.train.seg_data import THRESHOLDS, Film, dice, iou, load_films, seg_folder

log = logging.getLogger("irmi.train")


def train_pair(f: Film, size: int) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """The (2 size)^2 image and float mask augmentation starts from."""
    s2 = 2 * size
    img = cv2.resize(f.work.pixels, (s2, s2), interpolation=cv2.INTER_AREA)
    m = cv2.resize(f.mask.astype(np.float32), (s2, s2), interpolation=cv2.INTER_AREA)
    return np.asarray(img, np.uint8), np.asarray(m, np.float32)


def _square(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    small = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    out: NDArray[np.bool_] = np.asarray(small) > 0
    return out


def at_original(p: NDArray[np.float32], shape: tuple[int, ...]) -> NDArray[np.float32]:
    out = cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32)


def _mean(_y: Arr, s: Arr) -> float:
    return float(np.mean(s))


def mean_ci(values: list[float], seed: int = 0) -> Estimate:
    """Mean over films with its 95% percentile bootstrap interval (1000 film resamples)."""
    v = np.asarray(values, np.float64)
    return bootstrap_ci(_mean, np.zeros(v.size), v, n_boot=1000, seed=seed)


def scores(films: list[Film], probs: NDArray[np.float32], t: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"dice": [], "iou": []}
    for f, p in zip(films, probs, strict=True):
        pred = at_original(p, f.mask.shape) >= t
        out["dice"].append(dice(pred, f.mask))
        out["iou"].append(iou(pred, f.mask))
    return out


def cmd_lung_seg(
    data_dir: Path | None = None, epochs: int = 60, size: int = SEG_INPUT_SIZE
) -> dict[str, Any]:
    from tb_service.train.export import parity, seg_graph, to_onnx
    from tb_service.train.fit import limit_threads
    from tb_service.train.seg_fit import predict, train_unet

    limit_threads()
    films, empty = load_films(data_dir, size)
    by = {s: [f for f in films if f.split == s] for s in ("train", "val", "test")}
    val_x = np.stack([f.x for f in by["val"]])
    val_y = np.stack([_square(f.mask, size) for f in by["val"]])
    fit = train_unet(
        [train_pair(f, size) for f in by["train"]], val_x, val_y, size=size, epochs=epochs
    )
    probs = {s: predict(fit.model, np.stack([f.x for f in fs])) for s, fs in by.items()}
    # Threshold: the best mean val Dice at the original resolution.
    val_dice = {t: float(np.mean(scores(by["val"], probs["val"], t)["dice"])) for t in THRESHOLDS}
    threshold = max(val_dice, key=lambda t: (val_dice[t], -abs(t - 0.5)))
    test = scores(by["test"], probs["test"], threshold)
    val = scores(by["val"], probs["val"], threshold)
    folder = seg_folder()
    onnx_path = folder / "model.onnx"
    graph = seg_graph(fit.model, size)
    to_onnx(graph, onnx_path)
    res: dict[str, Any] = {
        "input_size": size,
        "threshold": threshold,
        "val_dice_by_threshold": {str(t): round(v, 4) for t, v in val_dice.items()},
        "test": {"dice": mean_ci(test["dice"]), "iou": mean_ci(test["iou"])},
        "val": {"dice": mean_ci(val["dice"]), "iou": mean_ci(val["iou"])},
        "test_per_film": {
            f.id: {"dice": round(d, 4), "iou": round(i, 4)}
            for f, d, i in zip(by["test"], test["dice"], test["iou"], strict=True)
        },
        "counts": {s: len(fs) for s, fs in by.items()},
        "left_out_empty_masks": empty,
        "history": fit.history,
        "best_epoch": fit.best_epoch,
        "train_seconds": round(fit.seconds, 1),
        "config": fit.config,
        "parity": parity(graph, onnx_path, np.stack([f.x for f in films])),
    }
    save_json("lung_seg", res)
    log.info("lung-seg test dice %s iou %s", res["test"]["dice"], res["test"]["iou"])
    return res


def cmd_lung_seg_report(data_dir: Path | None = None) -> None:
    """Evaluate the exported model (crop on lung-masks test, plausibility survey on the
    chest sources) and write its card and report."""
    from tb_service.train.seg_publish import write_seg
    from tb_service.train.seg_survey import crop_on_test, survey

    res = load_json("lung_seg")
    if res is None:
        raise FileNotFoundError("run `python -m tb_service.train lung-seg` first")
    # The card must exist (with the model's sha256) before the committed model can be loaded.
    write_seg(seg_folder(), res)
    films, _ = load_films(data_dir, int(res["input_size"]))
    res["crop_on_test"] = crop_on_test([f for f in films if f.split == "test"], seg_folder())
    res["survey"] = survey(data_dir, seg_folder())
    save_json("lung_seg", res)
    write_seg(seg_folder(), res)
