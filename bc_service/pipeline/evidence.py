"""What the version-2 mammography models read, shared by training and serving (no
TensorFlow): multi-scale filter statistics of one breast, the same statistics of the other
breast of the same woman and view subtracted from them (bilateral asymmetry, how radiologists
and classic CAD find masses and asymmetries), a smoothed-brightness comparison of the two
breasts laid over each other, and the breast's tissue statistics for ``mammo-density``.

The working image (``MammoState.work``: chest wall left, cropped to the breast's bounding box,
512 px high) is halved first (~800 um per pixel on mini-MIAS: enough for statistics of
masses and densities, and four views stay within the time budget). The two breasts of a
woman line up by scaling one onto the other's shape; nothing finer (no registration).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

HALF = 0.5  # the maps are computed on the working image at this scale
SCALES = (2.0, 4.0, 8.0)  # Gaussian sigmas at half resolution (~1.6, 3.2, 6.4 mm)
CONTRA_SIGMA = 8.0  # the smoothing at which the two breasts are compared
EDGE_PX = 3  # the skin line (this many half-resolution pixels) is left out of the statistics

CHANNELS = [*(f"dog_{2 * s:g}" for s in SCALES), "local_std", "blob_small", "blob_large"]
STATS = (50, 95, 99, 100)  # percentiles of each channel inside the breast
OWN_FEATURES = [
    *(f"{c}_p{q}" for c in CHANNELS for q in STATS),
    *(f"intensity_p{q}" for q in (10, 50, 90, 99)),
    "dense_frac",
]
CONTRA_FEATURES = [
    *(f"contra_p{q}" for q in (1, 5, 50, 95, 99)),
    "contra_abs_mean",
]
# mammo-view/2's input: own statistics, own minus the other breast's, the comparison maps.
# Without the other breast (one-breast exams, one-view predictions) the last two groups are
# zeros and the model's unilateral output (which has no weight on them) is read.
VIEW_FEATURES_V2 = [
    *OWN_FEATURES,
    *(f"{f}_minus_other" for f in OWN_FEATURES),
    *CONTRA_FEATURES,
]
N_OWN = len(OWN_FEATURES)

DENSITY_FEATURES = [
    *(f"intensity_p{q}" for q in (10, 25, 50, 75, 90)),
    "intensity_std",
    "dense_frac",
    "texture",
    "clahe_p50",
    "clahe_p90",
]
DENSITY_LABELS = ["F", "G", "D"]  # fatty, fatty-glandular, dense-glandular (mini-MIAS)


@dataclass
class BreastMaps:
    """One view's maps at half working resolution (chest wall left)."""

    mask: NDArray[np.bool_]
    inner: NDArray[np.bool_]  # the breast without its skin line
    channels: NDArray[np.float32]  # (H, W, len(CHANNELS))
    smooth: NDArray[np.float32]  # mask-normalised brightness at CONTRA_SIGMA
    intensities: NDArray[np.float32]  # the breast's pixel values in [0, 1]
    clahe: NDArray[np.float32]  # the same pixels after CLAHE (``MammoState.enhanced``)
    own: NDArray[np.float32] | None = None  # own_features, once computed (combine reuses it)


def _blur(x: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    return np.asarray(cv2.GaussianBlur(x, (0, 0), sigma), np.float32)


def breast_maps(
    work: NDArray[np.uint8], mask: NDArray[np.bool_], enhanced: NDArray[np.uint8]
) -> BreastMaps:
    """The maps of one working image (before CLAHE), its mask and its CLAHE image."""
    h, w = max(1, round(work.shape[0] * HALF)), max(1, round(work.shape[1] * HALF))
    img = cv2.resize(work, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    enh = cv2.resize(enhanced, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    small = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    kernel = np.ones((2 * EDGE_PX + 1, 2 * EDGE_PX + 1), np.uint8)
    inner = cv2.erode(small.astype(np.uint8), kernel) > 0
    if not inner.any():
        inner = small.copy()
    inside = img[small] if small.any() else np.zeros(1, np.float32)
    median = float(np.median(inside))
    filled = np.where(small, img, median).astype(np.float32)  # calm blurs at the edge
    g = {s: _blur(filled, s) for s in (*SCALES, 2 * SCALES[-1], 3.0, 6.0)}
    chans = [g[s] - g[2 * s] for s in SCALES]
    chans.append(np.sqrt(np.clip(_blur(filled * filled, 4.0) - g[4.0] ** 2, 0.0, None)))
    for s in (3.0, 6.0):
        gs = g[s]
        dxx = cv2.Sobel(gs, cv2.CV_32F, 2, 0, ksize=3)
        dyy = cv2.Sobel(gs, cv2.CV_32F, 0, 2, ksize=3)
        dxy = cv2.Sobel(gs, cv2.CV_32F, 1, 1, ksize=3)
        # A bright blob has both Hessian eigenvalues negative: the less negative one, scaled.
        tr, det = dxx + dyy, dxx * dyy - dxy * dxy
        lam = tr / 2 + np.sqrt(np.clip(tr * tr / 4 - det, 0.0, None))
        chans.append(np.clip(-lam, 0.0, None) * (s * s))
    m = small.astype(np.float32)
    num, den = _blur(img * m, CONTRA_SIGMA), _blur(m, CONTRA_SIGMA)
    smooth = np.where(den > 1e-3, num / np.maximum(den, 1e-3), median).astype(np.float32)
    clahe = enh[small] if small.any() else np.zeros(1, np.float32)
    return BreastMaps(
        small, inner, np.stack(chans, axis=-1).astype(np.float32), smooth, inside, clahe
    )


def _dense_frac(values: NDArray[np.float32]) -> float:
    """Share of the breast brighter than midway between its 10th and 99th percentiles."""
    lo, hi = np.percentile(values, [10, 99])
    return float((values > (lo + hi) / 2).mean())


def own_features(maps: BreastMaps) -> NDArray[np.float32]:
    """(len(OWN_FEATURES),): percentiles of every channel inside the breast, its brightness
    percentiles and dense share (computed once per maps)."""
    if maps.own is None:
        maps.own = _own_features(maps)
    return maps.own


def _own_features(maps: BreastMaps) -> NDArray[np.float32]:
    feats: list[float] = []
    for j in range(len(CHANNELS)):
        values = maps.channels[..., j][maps.inner]
        feats += np.percentile(values, STATS).tolist() if values.size else [0.0] * len(STATS)
    feats += np.percentile(maps.intensities, [10, 50, 90, 99]).tolist()
    feats.append(_dense_frac(maps.intensities))
    return np.asarray(feats, np.float32)


def contra_features(maps: BreastMaps, other: BreastMaps) -> NDArray[np.float32]:
    """(len(CONTRA_FEATURES),): this breast's smoothed brightness minus the other breast's at
    the same place (the other one scaled onto this one's shape), summarised."""
    h, w = maps.smooth.shape
    there = cv2.resize(other.smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    diff = (maps.smooth - there)[maps.inner]
    if diff.size == 0:
        diff = np.zeros(1, np.float32)
    pct = np.percentile(diff, [1, 5, 50, 95, 99]).tolist()
    return np.asarray([*pct, float(np.abs(diff).mean())], np.float32)


def view_inputs(maps: BreastMaps, other: BreastMaps | None) -> NDArray[np.float32]:
    """mammo-view/2's input (len(VIEW_FEATURES_V2),); the bilateral part is zeros without
    the other breast."""
    own = own_features(maps)
    if other is None:
        rest = np.zeros(len(VIEW_FEATURES_V2) - N_OWN, np.float32)
    else:
        rest = np.concatenate([own - own_features(other), contra_features(maps, other)])
    return np.concatenate([own, rest]).astype(np.float32)


def density_inputs(maps: BreastMaps) -> NDArray[np.float32]:
    """mammo-density's input (len(DENSITY_FEATURES),): the breast's brightness distribution
    before and after CLAHE, its dense share and texture."""
    v = maps.intensities
    texture = maps.channels[..., CHANNELS.index("local_std")][maps.inner]
    feats = [
        *np.percentile(v, [10, 25, 50, 75, 90]).tolist(),
        float(v.std()),
        _dense_frac(v),
        float(texture.mean()) if texture.size else 0.0,
        *np.percentile(maps.clahe, [50, 90]).tolist(),
    ]
    return np.asarray(feats, np.float32)
