"""Data loaders (TensorFlow-free, so tests run without the ``train`` extra).

Three layouts are understood:

* ``labels.csv`` (+ optional ``splits.csv``): the project's layout under ``../shared/data``
  (columns ``path,label[,patient_id,...]`` and ``path,split``);
* Shenzhen/Montgomery: ``CHNCXR_0001_0.png`` / ``MCUCXR_0001_1.png`` anywhere below a folder,
  the last digit 1 = tuberculosis, 0 = normal;
* folder per class: ``<root>/<class>/<image>``.

Layouts without a split file get a deterministic patient-level split by hashing the patient
id (the file stem where none is known), 70/15/15.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
SHENZHEN_RE = re.compile(r"^(?P<site>[A-Z]+CXR)_(?P<num>\d+)_(?P<tb>[01])$", re.IGNORECASE)

# Label names of the chest abnormality task.
NORMAL_LABELS = {"normal", "no_finding"}
SUBTYPE_LABELS = {"bacterial_pneumonia": 0, "viral_pneumonia": 1}


@dataclass(frozen=True)
class Record:
    """One image: where it is, its label, its split, and what else the source says."""

    path: Path
    label: str
    split: str
    dataset: str
    patient_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def abnormal(self) -> int:
        """1 = abnormal (pneumonia, TB, anything not normal), 0 = normal."""
        return 0 if self.label in NORMAL_LABELS else 1

    @property
    def subtype(self) -> int:
        """0 bacterial, 1 viral, -1 not applicable."""
        return SUBTYPE_LABELS.get(self.label, -1)


def hash_split(key: str, val: float = 0.15, test: float = 0.15) -> str:
    """Deterministic split from a patient key (stable across machines and runs)."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test:
        return "test"
    if h < test + val:
        return "val"
    return "train"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def load_labels_csv(root: Path, dataset: str | None = None) -> list[Record]:
    """``labels.csv`` (+ ``splits.csv``); without a split file every row gets a hash split."""
    root = Path(root)
    name = dataset or root.name
    splits: dict[str, str] = {}
    if (root / "splits.csv").exists():
        splits = {r["path"]: r["split"] for r in _read_csv(root / "splits.csv")}
    out = []
    for row in _read_csv(root / "labels.csv"):
        rel = row["path"]
        patient = row.get("patient_id") or Path(rel).stem
        split = splits.get(rel) or hash_split(f"{name}/{patient}")
        extra = {k: v for k, v in row.items() if k not in {"path", "label", "patient_id"}}
        out.append(Record(root / rel, row["label"], split, name, patient, extra))
    return out


def _images_below(root: Path) -> Iterable[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_shenzhen_montgomery(root: Path, dataset: str | None = None) -> list[Record]:
    """Files named ``<SITE>CXR_<num>_<0|1>.<ext>``: last digit 1 = TB, 0 = normal."""
    root = Path(root)
    name = dataset or root.name
    out = []
    for p in _images_below(root):
        m = SHENZHEN_RE.match(p.stem)
        if m is None:
            continue
        label = "tb" if m.group("tb") == "1" else "normal"
        patient = f"{m.group('site').upper()}_{m.group('num')}"
        out.append(Record(p, label, hash_split(f"{name}/{patient}"), name, patient))
    return out


def load_folder_per_class(root: Path, dataset: str | None = None) -> list[Record]:
    """``<root>/<class>/<image>``: the folder name is the label."""
    root = Path(root)
    name = dataset or root.name
    out = []
    for cls in sorted(d for d in root.iterdir() if d.is_dir()):
        for p in _images_below(cls):
            out.append(Record(p, cls.name, hash_split(f"{name}/{p.stem}"), name, p.stem))
    return out


def load_dataset(root: Path, dataset: str | None = None) -> list[Record]:
    """Pick the layout: labels.csv, else Shenzhen/Montgomery names, else folder per class."""
    root = Path(root)
    if (root / "labels.csv").exists():
        return load_labels_csv(root, dataset)
    sz = load_shenzhen_montgomery(root, dataset)
    if sz:
        return sz
    return load_folder_per_class(root, dataset)


def read_boxes(root: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """TBX11K-style ``boxes.csv``: path -> lesion boxes as fractions (x0, y0, x1, y1)."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    path = Path(root) / "boxes.csv"
    if not path.exists():
        return boxes
    for row in _read_csv(path):
        box = (float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
        boxes.setdefault(row["path"], []).append(box)
    return boxes
