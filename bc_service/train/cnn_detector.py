"""An experiment for issue 14, not served: a small convolutional lesion detector trained strictly
inside the patient-level 5-fold cross-validation of mammo-view/2 (the same folds as
:mod:`bc_service.train.screen` and :mod:`bc_service.train.detector`), and whether its responses
raise the out-of-fold normal-vs-abnormal AUC of the view model.

For each fold k a fresh network is trained on the images of the other four folds only. Its
input is a 48 x 48 patch of the CLAHE working image at half resolution (the scale of the
evidence maps, ~0.7 mm per pixel on mini-MIAS) and, in the bilateral variants, the same place
of the other breast of the same woman (scaled onto this breast's shape, as
:func:`bc_service.pipeline.evidence.contra_features` does) as a second channel. Positives are
patches centred within 0.25, 0.5 and 1 lesion radius of every located lesion; negatives are
breast patches away from every lesion (half uniform, half drawn towards dense tissue); flips and
quarter turns augment both; one round of hard-negative mining (the training images' strongest
false responses) is optional. Abnormal images without a located lesion give no patches.

The network is fully convolutional, so one pass over a whole breast gives its probability map
(stride 8, upsampled to the half-resolution grid). Per image: max, top-1% mean, mean and the
share over 0.5 of the map inside the breast, the same minus the other breast's, and the max of
the map minus the other breast's map (:mod:`bc_service.train.cnn_evaluation`). Those features,
alone or appended to ``Cohort.view_inputs(bilateral=True)``, go through the screen's logistic
regression with C chosen on the pooled OOF AUC (the screen's convention). The fixed test split
is never used.

Run: ``python -m bc_service.train.cnn_detector [--variants a,b] [--folds 0,1,..]``; writes
``var/cnn_detector.json``. TensorFlow is imported by the functions that train.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train.cnn_evaluation import (
    FEATURES,
    REPORT,
    evaluate,
    image_features,
    lesions_half,
    report_markdown,
)
from bc_service.train.cohort import Cohort, load_cohort
from bc_service.train.data import augment_patches
from bc_service.train.folds import N_FOLDS

log = logging.getLogger("irmi.bc.train")

PATCH = 48  # half-resolution pixels (~34 mm on mini-MIAS)
MAP_STRIDE = 8  # the fully convolutional net's output stride
RADII = (0.25, 0.5, 1.0)  # positives: centres within these fractions of the lesion radius
POS_PER_RADIUS = 12  # positive patches per lesion and radius, per epoch
NEG_PER_IMAGE = 24  # negative patches per image, per epoch
HARD_PER_IMAGE = 12  # hardest negatives per image kept for the epochs after mining
Arr = NDArray[np.float64]


@dataclass(frozen=True)
class Variant:
    name: str
    bilateral: bool  # second input channel: the other breast at the same place
    epochs: int
    hard_round: bool  # one round of hard-negative mining after ``epochs // 2``
    seed: int = 1000  # fold k's net starts from seed + k


VARIANTS = {
    "bilateral_hnm": Variant("bilateral_hnm", True, 8, True),
    "unilateral_hnm": Variant("unilateral_hnm", False, 8, True),
    # the same recipe as bilateral_hnm from other seeds: the run-to-run spread
    "bilateral_hnm_seed2": Variant("bilateral_hnm_seed2", True, 8, True, seed=2000),
}


# --------------------------------------------------------------------------- inputs


def half_images(cohort: Cohort) -> list[NDArray[np.float32]]:
    """Every image's CLAHE working image at half resolution, (H, W, 2) float32 in [0, 1]:
    this breast (zero outside the breast) and the other breast scaled onto its shape."""
    own = []
    for p, m in zip(cohort.items, cohort.maps, strict=True):
        h, w = m.mask.shape
        img = cv2.resize(p.enhanced, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        own.append(np.where(m.mask, img / 255.0, 0.0).astype(np.float32))
    out = []
    for i, img in enumerate(own):
        h, w = img.shape
        other = cv2.resize(own[cohort.partner[i]], (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(np.stack([img, other], axis=-1).astype(np.float32))
    return out


def _neg_ok(p: Any, m: ev.BreastMaps) -> NDArray[np.bool_]:
    """Half-resolution pixels that may serve as negatives: inside the breast, away from every
    lesion; none on abnormal images without a located lesion."""
    ok = m.inner.copy()
    if p.case.label != "normal" and not p.lesions_work:
        ok[:] = False
        return ok
    yy, xx = np.mgrid[: ok.shape[0], : ok.shape[1]]
    for x, y, r in lesions_half(p):
        ok &= np.hypot(xx - x, yy - y) > 1.5 * r + 4
    return ok


def _crop(img: NDArray[np.float32], centres: NDArray[np.int64]) -> NDArray[np.float32]:
    """(N, PATCH, PATCH, C) patches centred at (row, col); zero beyond the image."""
    half = PATCH // 2
    padded = np.pad(img, ((half, half), (half, half), (0, 0)))
    r = np.clip(centres[:, 0], 0, img.shape[0] - 1)
    c = np.clip(centres[:, 1], 0, img.shape[1] - 1)
    idx_r = r[:, None] + np.arange(PATCH)[None, :]
    idx_c = c[:, None] + np.arange(PATCH)[None, :]
    out: NDArray[np.float32] = padded[idx_r[:, :, None], idx_c[:, None, :]]
    return out


def sample_epoch(
    train: NDArray[np.int64],
    cohort: Cohort,
    imgs: list[NDArray[np.float32]],
    neg_ok: list[NDArray[np.bool_]],
    hard: dict[int, NDArray[np.int64]],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """One epoch's patches: lesion-centred positives at several radii, negatives away from
    lesions (half uniform, half towards dense tissue) and the mined hard negatives."""
    xs, ys = [], []
    for i in train:
        p, img = cohort.items[i], imgs[i]
        h, w = img.shape[:2]
        for lx, ly, lr in lesions_half(p):
            for frac in RADII:
                rad = max(frac * lr, 1.5)
                ang = rng.uniform(0, 2 * np.pi, POS_PER_RADIUS)
                d = rad * np.sqrt(rng.uniform(0, 1, POS_PER_RADIUS))
                at = np.stack([ly + d * np.sin(ang), lx + d * np.cos(ang)], axis=1).round()
                pos_c = np.clip(at, 0, [h - 1, w - 1]).astype(np.int64)
                xs.append(_crop(img, pos_c))
                ys.append(np.ones(len(pos_c), np.float32))
        rr, cc = np.nonzero(neg_ok[i])
        if rr.size:
            n_uni = min(NEG_PER_IMAGE // 2, rr.size)
            uni = rng.choice(rr.size, n_uni, replace=False)
            bright = img[rr, cc, 0].astype(np.float64) ** 3 + 1e-3
            n_br = min(NEG_PER_IMAGE - n_uni, rr.size)
            br = rng.choice(rr.size, n_br, replace=False, p=bright / bright.sum())
            pick = np.concatenate([uni, br])
            neg_c = np.stack([rr[pick], cc[pick]], axis=1).astype(np.int64)
            if i in hard:
                neg_c = np.concatenate([neg_c, hard[i]])
            xs.append(_crop(img, neg_c))
            ys.append(np.zeros(len(neg_c), np.float32))
    x = augment_patches(np.concatenate(xs), rng, bias=0.0)
    y = np.concatenate(ys)
    order = rng.permutation(len(y))
    return x[order], y[order]


# --------------------------------------------------------------------------- the network


def detector_net(channels: int, seed: int) -> Any:
    """Fully convolutional: a 48 x 48 patch gives one probability; a whole breast gives a
    map at stride 8. Valid convolutions 16-32-64, max pooling, a 4 x 4 convolution (64) and a
    1 x 1 sigmoid head; ~60k weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, channels), name="image")
    x = inp
    for width in (16, 32, 64):
        x = keras.layers.Conv2D(width, 3, padding="valid", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 4, padding="valid", activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="p_lesion")(x)
    return keras.Model(inp, out)


def prob_map(model: Any, img: NDArray[np.float32], mask: NDArray[np.bool_]) -> Arr:
    """The network's lesion probability at every half-resolution pixel (its stride-8 map
    upsampled), zero outside the breast."""
    h, w = img.shape[:2]
    half = PATCH // 2
    # Pad so that output j is the patch centred at row/col MAP_STRIDE * j of the image.
    ph = ((h + MAP_STRIDE - 1) // MAP_STRIDE) * MAP_STRIDE
    pw = ((w + MAP_STRIDE - 1) // MAP_STRIDE) * MAP_STRIDE
    padded = np.pad(img, ((half, ph - h + half), (half, pw - w + half), (0, 0)))
    out = model(padded[None], training=False).numpy()[0, :, :, 0]
    coarse = out[: ph // MAP_STRIDE, : pw // MAP_STRIDE].astype(np.float32)
    # Coarse cell j is the patch centred at pixel 8 j: bilinear in between.
    fine = _lerp(_lerp(coarse.astype(np.float64), h, axis=0), w, axis=1)
    return np.where(mask, fine, 0.0).astype(np.float64)


def _lerp(a: Arr, n: int, axis: int) -> Arr:
    """``a`` sampled at coordinates 0, 1/MAP_STRIDE, 2/MAP_STRIDE, ... (n of them) along
    ``axis``, linearly interpolated."""
    at = np.arange(n) / MAP_STRIDE
    i0 = np.minimum(np.floor(at).astype(np.int64), a.shape[axis] - 1)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    t = (at - i0).reshape([-1 if d == axis else 1 for d in range(a.ndim)])
    out: Arr = np.take(a, i0, axis=axis) * (1 - t) + np.take(a, i1, axis=axis) * t
    return out


def _fit_fold(
    variant: Variant,
    train: NDArray[np.int64],
    cohort: Cohort,
    imgs: list[NDArray[np.float32]],
    neg_ok: list[NDArray[np.bool_]],
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    import keras

    ch = 2 if variant.bilateral else 1
    model = detector_net(ch, seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    rng = np.random.default_rng(seed)
    sel = [im[..., :ch] for im in imgs]
    hard: dict[int, NDArray[np.int64]] = {}
    info: dict[str, Any] = {"loss": [], "n_patches": []}
    for epoch in range(variant.epochs):
        if variant.hard_round and epoch == variant.epochs // 2:
            hard = _mine(model, train, sel, cohort, neg_ok)
            info["n_hard"] = int(sum(len(v) for v in hard.values()))
        x, y = sample_epoch(train, cohort, sel, neg_ok, hard, rng)
        pos = float(y.mean())
        weights = np.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos)).astype(np.float32)
        hist = model.fit(
            x,
            y[:, None, None, None],
            sample_weight=weights,
            batch_size=128,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        info["loss"].append(round(float(hist.history["loss"][-1]), 4))
        info["n_patches"].append(len(y))
    return model, info


def _mine(
    model: Any,
    train: NDArray[np.int64],
    imgs: list[NDArray[np.float32]],
    cohort: Cohort,
    neg_ok: list[NDArray[np.bool_]],
) -> dict[int, NDArray[np.int64]]:
    """Per training image, the negative-eligible pixels where the current net responds most
    (local maxima first by taking every 4th pixel)."""
    out = {}
    for i in train:
        ok = neg_ok[i]
        if not ok.any():
            continue
        pm = prob_map(model, imgs[i], cohort.maps[i].mask)
        grid = np.zeros_like(ok)
        grid[::4, ::4] = True
        rr, cc = np.nonzero(ok & grid)
        if rr.size == 0:
            continue
        top = np.argsort(pm[rr, cc])[::-1][:HARD_PER_IMAGE]
        out[int(i)] = np.stack([rr[top], cc[top]], axis=1).astype(np.int64)
    return out


# --------------------------------------------------------------------------- the experiment


def run_variant(
    variant: Variant, cohort: Cohort, imgs: list[NDArray[np.float32]], folds: list[int]
) -> dict[str, Any]:
    """Train one net per fold on the other folds, map every held-out image; the pooled OOF
    maps, features and timing."""
    n = len(cohort.items)
    neg_ok = [_neg_ok(p, m) for p, m in zip(cohort.items, cohort.maps, strict=True)]
    ch = 2 if variant.bilateral else 1
    maps: list[Arr] = [np.zeros(m.mask.shape) for m in cohort.maps]
    fold_info = {}
    infer_s: list[float] = []
    for k in folds:
        t0 = time.process_time()
        w0 = time.time()
        train = np.flatnonzero(cohort.fold != k)
        model, info = _fit_fold(variant, train, cohort, imgs, neg_ok, seed=variant.seed + k)
        info["train_cpu_s"] = round(time.process_time() - t0, 1)
        info["train_wall_s"] = round(time.time() - w0, 1)
        for i in np.flatnonzero(cohort.fold == k):
            t1 = time.process_time()
            maps[i] = prob_map(model, imgs[i][..., :ch], cohort.maps[i].mask)
            infer_s.append(time.process_time() - t1)
        fold_info[str(k)] = info
        log.info("%s fold %d: %s", variant.name, k, info)
    return {
        "maps": maps,
        "fold_info": fold_info,
        "infer_cpu_s_per_view": {
            "median": round(float(np.median(infer_s)), 4),
            "p95": round(float(np.percentile(infer_s, 95)), 4),
        },
        "n": n,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--folds", default=",".join(str(k) for k in range(N_FOLDS)))
    ap.add_argument("--epochs", type=int, default=0, help="override the variants' epochs")
    ap.add_argument("--out", type=Path, default=Path("var/cnn_detector.json"))
    ap.add_argument(
        "--report-only", action="store_true", help=f"only write {REPORT.name} from --out"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.report_only:
        REPORT.write_text(report_markdown(json.loads(args.out.read_text())))
        return
    threads = int(os.environ.get("IRMI_TF_THREADS", "2"))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    data_dir = Path(os.environ.get("IRMI_DATA_DIR", "../shared/data"))
    t0 = time.time()
    cohort = load_cohort(data_dir)
    imgs = half_images(cohort)
    folds = [int(k) for k in args.folds.split(",")]
    results: dict[str, Any] = {
        "what": "issue 14 experiment: CNN lesion detector inside the patient-level 5-fold CV",
        "served_mammo_view_2_oof_auc": "0.627 (0.563-0.688)",
        "hog_baseline_oof_auc": 0.541,
        "folds_run": folds,
        "tf_threads": threads,
        "variants": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split(","):
        v = VARIANTS[name]
        if args.epochs:
            v = Variant(v.name, v.bilateral, args.epochs, v.hard_round, v.seed)
        w0 = time.time()
        run = run_variant(v, cohort, imgs, folds)
        entry: dict[str, Any] = {
            "config": {
                **v.__dict__,
                "patch": PATCH,
                "pos_per_radius": POS_PER_RADIUS,
                "neg_per_image": NEG_PER_IMAGE,
                "hard_per_image": HARD_PER_IMAGE,
            },
            "fold_info": run["fold_info"],
            "infer_cpu_s_per_view": run["infer_cpu_s_per_view"],
        }
        if len(folds) == N_FOLDS:
            feats = image_features(run["maps"], cohort)
            entry.update(evaluate(cohort, feats, run["maps"]))
            entry["features"] = list(FEATURES)
            entry["oof_features"] = feats.round(5).tolist()
        entry["wall_s"] = round(time.time() - w0, 1)
        results["variants"][name] = entry
        args.out.write_text(json.dumps(results, indent=1))
        log.info("%s done in %.0f s", name, entry["wall_s"])
    results["total_wall_s"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(results, indent=1))
    if len(folds) == N_FOLDS:
        REPORT.write_text(report_markdown(results))


if __name__ == "__main__":
    main()
