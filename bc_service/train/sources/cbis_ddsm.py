"""CBIS-DDSM (Lee et al., Sci Data 2017; TCIA, CC BY 3.0) read into :class:`SourceCase`
records.

Layout: the four description files ``mass_case_description_{train,test}_set.csv`` and
``calc_case_description_{train,test}_set.csv`` (any of them; at least one) at the root, one
row per abnormality: ``patient_id``, ``left or right breast``, ``image view``, ``abnormality
type``, ``pathology`` (BENIGN, BENIGN_WITHOUT_CALLBACK, MALIGNANT), ``image file path`` and
``ROI mask file path``, plus breast density and the mass shape/margins or calcification
type. The DICOM files lie under the root (or ``CBIS-DDSM/`` below it) at the paths the CSV
gives, or, as the TCIA download names them, in the folder the path starts with
(``Mass-Training_P_00001_LEFT_CC/<study>/<series>/1-1.dcm``); a mask folder also holds the
cropped lesion, told apart by its series description or by its size and binary pixels.

One record per image (patient, side, view): the rows of one image become its lesions, its
label the worst pathology, each lesion's centre and radius those of its ROI mask (scaled to
the full image where the mask's size differs). The set has no normal views. Splits: the
test files' patients are ``test`` (all their views, so that no woman is in two splits), a
seeded 20% of the other patients ``val``, the rest ``train``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bc_service.train.sources.records import (
    LayoutError,
    SourceCase,
    SourceLesion,
    circle_of_mask,
    patient_splits,
    worst,
)

log = logging.getLogger("irmi.bc.train")

NAME = "cbis-ddsm"
DESCRIPTION_FILES = tuple(
    f"{kind}_case_description_{split}_set.csv"
    for kind in ("mass", "calc")
    for split in ("train", "test")
)
REQUIRED = (
    "patient_id",
    "left_or_right_breast",
    "image_view",
    "abnormality_type",
    "pathology",
    "image_file_path",
    "roi_mask_file_path",
)
PATHOLOGY = {"BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign", "MALIGNANT": "malignant"}
SIDE = {"LEFT": "L", "RIGHT": "R"}
VIEW = {"CC": "CC", "MLO": "MLO"}


def _key(column: str) -> str:
    return "_".join(column.strip().lower().split())


def abnormality_class(row: dict[str, str]) -> str:
    """The mini-mias class of a CBIS-DDSM abnormality (masses by margin, then shape)."""
    if row["abnormality_type"].strip().lower().startswith("calc"):
        return "CALC"
    margins = row.get("mass_margins", "").upper()
    shape = row.get("mass_shape", "").upper()
    if "SPICULATED" in margins:
        return "SPIC"
    if "ARCHITECTURAL_DISTORTION" in shape:
        return "ARCH"
    if "ASYMMETRIC" in shape:
        return "ASYM"
    if "CIRCUMSCRIBED" in margins:
        return "CIRC"
    return "MISC"


def _read_rows(root: Path) -> list[tuple[str, dict[str, str]]]:
    files = [root / f for f in DESCRIPTION_FILES if (root / f).is_file()]
    if not files:
        raise LayoutError(
            f"{root} is not a CBIS-DDSM folder: none of {', '.join(DESCRIPTION_FILES)} found."
        )
    rows = []
    for path in files:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = {_key(c) for c in reader.fieldnames or []}
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise LayoutError(f"{path.name}: missing column(s) {', '.join(missing)}.")
            split = "test" if "_test_" in path.name else "train"
            for line, raw in enumerate(reader, start=2):
                row = {_key(k): (v or "").strip() for k, v in raw.items() if k is not None}
                for column, table in (
                    ("left_or_right_breast", SIDE),
                    ("image_view", VIEW),
                    ("pathology", PATHOLOGY),
                ):
                    if row[column].upper() not in table:
                        raise LayoutError(
                            f"{path.name} line {line}: {column} {row[column][:30]!r} is not one "
                            f"of {', '.join(table)}."
                        )
                rows.append((split, row))
    return rows


def _bases(root: Path) -> list[Path]:
    return [root, root / "CBIS-DDSM"]


def _folder_dicoms(root: Path, rel: str) -> list[Path]:
    """The DICOM files under the folder a CSV path starts with (the TCIA download's names)."""
    first = Path(rel.replace("\\", "/")).parts[0]
    for base in _bases(root):
        folder = base / first
        if folder.is_dir():
            return sorted(folder.rglob("*.dcm"))
    return []


def _header(path: Path) -> Any:
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def find_image(root: Path, rel: str) -> Path:
    for base in _bases(root):
        if (base / rel).is_file():
            return base / rel
    found = _folder_dicoms(root, rel)
    if len(found) == 1:
        return found[0]
    if not found:
        raise LayoutError(f"image file {rel[:120]!r} not found under {root}.")
    raise LayoutError(f"{len(found)} DICOM files where {rel[:80]!r} names one image.")


def _pixels(path: Path) -> NDArray[Any]:
    import pydicom

    arr: NDArray[Any] = np.asarray(pydicom.dcmread(path).pixel_array)
    return arr


def find_mask(root: Path, rel: str) -> tuple[Path, NDArray[np.bool_]]:
    """The ROI mask file and its pixels as a boolean mask."""
    for base in _bases(root):
        if (base / rel).is_file():
            arr = _pixels(base / rel)
            if _is_mask(arr):  # the CSV's mask and cropped-image paths are swapped at times
                return base / rel, arr > 0
    candidates = _folder_dicoms(root, rel)
    for path in candidates:
        desc = str(getattr(_header(path), "SeriesDescription", "")).lower()
        if "mask" in desc:
            return path, _pixels(path) > 0
    # No description: the mask is the binary image; the cropped lesion is small and gray.
    binary = [(p, a) for p, a in ((p, _pixels(p)) for p in candidates) if _is_mask(a)]
    if not binary:
        raise LayoutError(f"ROI mask {rel[:120]!r} not found under {root}.")
    path, arr = max(binary, key=lambda pa: pa[1].size)
    return path, arr > 0


def _is_mask(arr: NDArray[Any]) -> bool:
    return arr.ndim == 2 and np.unique(arr).size <= 2


def _check_tags(path: Path, side: str, view: str, rel: str) -> tuple[int, int]:
    """The image's (rows, columns); a modality or laterality/view tag that contradicts the
    description file is a layout error."""
    ds = _header(path)
    modality = str(getattr(ds, "Modality", "")).upper()
    if modality and modality != "MG":
        raise LayoutError(f"{rel[:80]}: Modality {modality}, not MG.")
    lat = str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "")).upper()
    if lat in ("L", "R") and lat != side:
        raise LayoutError(f"{rel[:80]}: the DICOM says laterality {lat}, the CSV {side}.")
    pos = str(getattr(ds, "ViewPosition", "")).upper()
    if pos in ("CC", "MLO") and pos != view:
        raise LayoutError(f"{rel[:80]}: the DICOM says view {pos}, the CSV {view}.")
    return int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))


def _density(row: dict[str, str]) -> int | None:
    text = row.get("breast_density", "")
    return int(text) if text.isdigit() and 1 <= int(text) <= 4 else None


def read(root: Path, seed: int = 0) -> list[SourceCase]:
    rows = _read_rows(root)
    cases: dict[tuple[str, str, str], SourceCase] = {}
    shapes: dict[tuple[str, str, str], tuple[int, int]] = {}
    test_patients = {r["patient_id"] for split, r in rows if split == "test"}
    for _split, row in rows:
        side = SIDE[row["left_or_right_breast"].upper()]
        view = VIEW[row["image_view"].upper()]
        key = (row["patient_id"], side, view)
        case = cases.get(key)
        if case is None:
            image = find_image(root, row["image_file_path"])
            shapes[key] = _check_tags(image, side, view, row["image_file_path"])
            case = SourceCase(
                path=str(image.relative_to(root)),
                label="normal",
                laterality=side,
                split="",
                patient=row["patient_id"],
                view=view,
                density=_density(row),
                source=NAME,
            )
            cases[key] = case
        severity = PATHOLOGY[row["pathology"].upper()]
        mask_path, mask = find_mask(root, row["roi_mask_file_path"])
        rows_, cols_ = shapes[key]
        circle = circle_of_mask(mask)
        if circle is None:
            raise LayoutError(f"ROI mask {row['roi_mask_file_path'][:80]!r} is empty.")
        x, y, r = circle
        if rows_ and cols_ and mask.shape != (rows_, cols_):  # masks of another size: rescale
            fy, fx = rows_ / mask.shape[0], cols_ / mask.shape[1]
            x, y, r = round(x * fx), round(y * fy), max(1, round(r * (fx * fy) ** 0.5))
        case.lesions.append(
            SourceLesion(
                x,
                y,
                r,
                severity,
                abnormality_class(row),
                mask_path=str(mask_path.relative_to(root)),
            )
        )
        case.findings.append(row["abnormality_type"].lower())
        case.label = worst([case.label, severity])
    out = list(cases.values())
    train_side = [c for c in out if c.patient not in test_patients]
    val_of = patient_splits(train_side, {"train": 0.8, "val": 0.2}, seed)
    for c in out:
        c.split = "test" if c.patient in test_patients else val_of[c.patient]
    women = len({c.patient for c in out})
    log.info("cbis-ddsm: %d views of %d women from %d rows", len(out), women, len(rows))
    return out
