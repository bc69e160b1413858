"""How the committed lung segmentation model behaves where no mask exists: the share of
plausible masks per chest source (all films), beside the heuristic ``lung_crop``'s fallback
share on the same films, and how much of the true lungs the crop keeps on lung-masks' test
films. Runs the ONNX model (TensorFlow-free)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.imaging import decode_image
from shared.model import OnnxModel
from shared.settings import default_data_dir
from shared.transforms import Compose
from tb_service.lungseg import LungSegCrop, seg_pipeline
from tb_service.preprocess import Work, find_lung_box
from tb_service.train import metrics as M  # noqa: N812
from tb_service.train.data import load_dataset

if TYPE_CHECKING:
    from tb_service.train.seg_data import Film

log = logging.getLogger("irmi.train")

SOURCES = ("nih-cxr14", "kermany-pediatric", "tbx11k", "hannover-covid19")


def _crop(folder: Path) -> LungSegCrop:
    model = OnnxModel(folder, use_gpu=False, intra_op_threads=2, warmup_runs=1)
    model.load()
    return LungSegCrop(model)


def crop_on_test(films: list[Film], folder: Path) -> dict[str, Any]:
    """Share of each test film's true lung pixels inside the crop box, and plausibility."""
    crop = _crop(folder)
    kept, plausible = [], []
    for f in films:
        out = crop(f.work)
        x0, y0, x1, y1 = out.crop_box
        kept.append(float(f.mask[y0:y1, x0:x1].sum()) / float(f.mask.sum()))
        plausible.append(not out.reasons)
    return {
        "n": len(films),
        "lung_pixels_inside_crop_mean": round(float(np.mean(kept)), 4),
        "lung_pixels_inside_crop_min": round(float(np.min(kept)), 4),
        "plausible_share": M.proportion_ci(np.array(plausible)),
    }


def survey(data_dir: Path | None, folder: Path) -> dict[str, Any]:
    """Per source: plausible-mask share and heuristic fallback share (95% CIs), mask area
    shares, the problems found, and the plausible share per label."""
    root = Path(data_dir or default_data_dir())
    crop = _crop(folder)
    head: Compose[Work] = Compose(list(seg_pipeline(crop.input_size))[:3])
    out: dict[str, Any] = {}
    for source in SOURCES:
        if not (root / source).exists():
            continue
        recs = load_dataset(root / source, source)
        plausible, fallback, areas, labels = [], [], [], []
        problems: Counter[str] = Counter()
        for r in recs:
            work = head(decode_image(r.path.read_bytes()))
            verdict = crop.check(work)
            plausible.append(verdict.plausible)
            fallback.append(find_lung_box(work.pixels) is None)
            areas.append(verdict.total_share)
            labels.append(r.label)
            problems.update(verdict.problems)
        ok, fb = np.array(plausible), np.array(fallback)
        lab = np.array(labels)
        out[source] = {
            "n": len(recs),
            "plausible_share": M.proportion_ci(ok),
            "heuristic_fallback_share": M.proportion_ci(fb),
            "implausible_and_heuristic_fallback": round(float((~ok & fb).mean()), 4),
            "plausible_share_by_label": {
                str(v): round(float(ok[lab == v].mean()), 4) for v in np.unique(lab)
            },
            "mask_area_share_quantiles": {
                str(q): round(float(np.percentile(areas, q)), 4) for q in (5, 25, 50, 75, 95)
            },
            "problems": dict(problems.most_common()),
            "mask_area_share": [round(a, 4) for a in areas],
        }
        log.info(
            "survey %s: plausible %.3f, heuristic fallback %.3f",
            source,
            ok.mean(),
            fb.mean(),
        )
    return out
