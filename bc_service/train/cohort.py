"""All of mini-MIAS as one cohort for patient-level cross-validation: every image through the
served stages (decode → orientation → crop → enhance), its version-2 evidence maps, the other
breast of the same woman, the labels, lesion classes, background tissue and folds.
TensorFlow-free."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bc_service.pipeline import evidence as ev
from bc_service.train import data as tdata
from bc_service.train.folds import patient_folds, woman

LESION_CLASSES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")


@dataclass
class Cohort:
    items: list[tdata.Prepared]
    maps: list[ev.BreastMaps]
    partner: NDArray[np.int64]  # index of the other breast of the same woman
    label: NDArray[np.str_]  # normal | benign | malignant
    tissue: NDArray[np.str_]  # F | G | D
    classes: list[set[str]]  # lesion classes of each image (spread ones included)
    split: NDArray[np.str_]  # the fixed train / val / test split
    fold: NDArray[np.int64]  # 0..4, grouped by woman, stratified by label

    @property
    def abnormal(self) -> NDArray[np.int64]:
        out: NDArray[np.int64] = (self.label != "normal").astype(np.int64)
        return out

    @property
    def malignant(self) -> NDArray[np.int64]:
        out: NDArray[np.int64] = (self.label == "malignant").astype(np.int64)
        return out

    @property
    def women(self) -> NDArray[np.int64]:
        return np.array([woman(p.case.path) for p in self.items])

    def view_inputs(self, bilateral: bool) -> NDArray[np.float64]:
        """mammo-view/2's input of every image, with or without the other breast."""
        return np.stack(
            [
                ev.view_inputs(m, self.maps[self.partner[i]] if bilateral else None)
                for i, m in enumerate(self.maps)
            ]
        ).astype(np.float64)

    def density_inputs(self) -> NDArray[np.float64]:
        return np.stack([ev.density_inputs(m) for m in self.maps]).astype(np.float64)


def _read_column(path: Path, column: str) -> dict[str, str]:
    with path.open() as fh:
        return {r["path"]: r[column] for r in csv.DictReader(fh)}


def _classes(root: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with (root / "lesions.csv").open() as fh:
        for r in csv.DictReader(fh):
            out.setdefault(r["path"], set()).add(r["abnormality"])
    return out


def load_cohort(data_dir: Path) -> Cohort:
    root = data_dir / "mini-mias"
    items = list(tdata.prepare_all(root))
    maps = []
    for p in items:
        s = p.state
        assert s.work is not None and s.work_mask is not None and s.enhanced is not None
        maps.append(ev.breast_maps(s.work, s.work_mask, s.enhanced))
    index = {p.case.path: i for i, p in enumerate(items)}
    partner = []
    for p in items:
        n = int(p.case.path[3:6])
        other = f"mdb{n + 1 if n % 2 else n - 1:03d}.png"
        partner.append(index[other])
    tissue = _read_column(root / "labels.csv", "tissue")
    classes = _classes(root)
    labels = [p.case.label for p in items]
    paths = [p.case.path for p in items]
    return Cohort(
        items=items,
        maps=maps,
        partner=np.array(partner, np.int64),
        label=np.array(labels),
        tissue=np.array([tissue[p] for p in paths]),
        classes=[classes.get(p, set()) for p in paths],
        split=np.array([p.case.split for p in items]),
        fold=patient_folds(paths, labels),
    )
