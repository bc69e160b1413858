"""INbreast (Moreira et al., Acad Radiol 2012) read into :class:`SourceCase` records.

Layout: the DICOM files, named ``<id>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm`` (``id`` the file
number, ``hash`` the woman), in ``AllDICOMs/`` or at the root; ``INbreast.csv`` (as released,
``;``-separated, or a ``,``-separated export of ``INbreast.xls``) with at least ``File Name``
and ``Bi-Rads`` per file (``Laterality``, ``View``, ``ACR`` used where present); and the ROI
files ``AllXML/<id>.xml`` (Apple property lists: ``Images`` → ``ROIs``, each with a ``Name``
and its ``Point_px`` outline as ``"(x, y)"`` strings).

Labels from the BI-RADS assessment: 1 normal, 2-3 benign, 4-6 malignant (INbreast has
biopsy results for few lesions; BI-RADS is what every file has). Lesions from the ROIs by
name (masses, spiculated regions, distortions, asymmetries, calcification clusters); single
calcification marks are joined into one lesion around them, or, spread over the breast,
leave the view without a located lesion (like mini-mias's spread calcifications). ROIs of
other names (the pectoral muscle, reference points) are not lesions. Splits: a seeded
patient-level 60/20/20 split (INbreast has none).
"""

from __future__ import annotations

import csv
import logging
import plistlib
import re
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

import numpy as np

from bc_service.train.sources.records import (
    LayoutError,
    SourceCase,
    SourceLesion,
    circle_of_outline,
    patient_splits,
)

log = logging.getLogger("irmi.bc.train")

NAME = "inbreast"
FILE_NAME = re.compile(r"^(\d+)_([0-9A-Za-z]+)_MG_([LR])_(CC|ML|MLO)_ANON\.dcm$", re.IGNORECASE)
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
# The marks of single calcifications that lie further apart than this share of the image
# height are "spread": the view has no located lesion.
SPREAD_SHARE = 0.15


def label_of_birads(text: str) -> str:
    value = text.strip().lower()
    if value == "1":
        return "normal"
    if value in ("2", "3"):
        return "benign"
    if value[:1] in ("4", "5", "6"):
        return "malignant"
    raise LayoutError(f"Bi-Rads {text[:10]!r} is not one of 1, 2, 3, 4a-4c, 5, 6.")


def roi_class(name: str) -> str | None:
    """The mini-mias class of an INbreast ROI name; None for ROIs that are not lesions."""
    n = name.strip().lower()
    if "calc" in n or "cluster" in n:
        return "CALC"
    if "spicul" in n:
        return "SPIC"
    if "distortion" in n:
        return "ARCH"
    if "asymmetr" in n:
        return "ASYM"
    if "mass" in n:
        return "MISC"
    return None


def _key(column: str) -> str:
    return re.sub(r"[^a-z]", "", column.lower())


def read_table(root: Path) -> dict[str, dict[str, str]]:
    """File number → its row of INbreast.csv (keys lower-case letters only: ``filename``,
    ``birads``, ``laterality``, ``view``, ``acr``)."""
    path = root / "INbreast.csv"
    if not path.is_file():
        raise LayoutError(f"{root} is not an INbreast folder: INbreast.csv not found.")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = {_key(c) for c in reader.fieldnames or []}
    missing = [c for c in ("filename", "birads") if c not in header]
    if missing:
        raise LayoutError(
            f"INbreast.csv: no {' / '.join(missing)} column (expected 'File Name' and 'Bi-Rads')."
        )
    out = {}
    for raw in reader:
        row = {_key(k): (v or "").strip() for k, v in raw.items() if k is not None}
        if row["filename"]:
            out[row["filename"].split(".")[0]] = row
    return out


def _dicoms(root: Path) -> dict[str, tuple[Path, str, str, str]]:
    """File number → (path, woman, side, view) of every DICOM named as INbreast names them."""
    out = {}
    for folder in (root / "AllDICOMs", root):
        for path in sorted(folder.glob("*.dcm")):
            m = FILE_NAME.match(path.name)
            if m:
                view = "CC" if m.group(4).upper() == "CC" else "MLO"
                out[m.group(1)] = (path, m.group(2), m.group(3).upper(), view)
    if not out:
        raise LayoutError(
            f"no DICOM named <id>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm in {root}/AllDICOMs or {root}."
        )
    return out


def _point(text: str) -> tuple[float, float]:
    x, y = (float(v) for v in text.strip().strip("()").split(",")[:2])
    return x, y


def read_rois(path: Path) -> list[tuple[str, list[tuple[float, float]]]]:
    """(name, outline) of every ROI of an INbreast XML file (an Apple plist)."""
    try:
        with path.open("rb") as fh:
            doc: Any = plistlib.load(fh)
    except (plistlib.InvalidFileException, ExpatError, ValueError, OSError) as exc:
        raise LayoutError(f"{path.name}: not an INbreast ROI property list ({exc}).") from exc
    rois = []
    for image in doc.get("Images", []) if isinstance(doc, dict) else []:
        for roi in image.get("ROIs", []):
            points = [_point(p) for p in roi.get("Point_px", [])]
            if points:
                rois.append((str(roi.get("Name", "")), points))
    return rois


def lesions_of(
    rois: list[tuple[str, list[tuple[float, float]]]], severity: str, height: int
) -> tuple[list[SourceLesion], bool, list[str]]:
    """The view's lesions, whether its calcifications are spread, and the ROI names kept."""
    import cv2

    lesions, names, marks = [], [], []
    for name, outline in rois:
        kind = roi_class(name)
        if kind is None:
            continue
        names.append(name)
        if kind == "CALC" and len(outline) < 3:
            marks += outline
            continue
        x, y, r = circle_of_outline(outline)
        lesions.append(SourceLesion(x, y, r, severity, kind, outline=outline))
    spread = False
    if marks:
        (cx, cy), radius = cv2.minEnclosingCircle(np.asarray(marks, np.float32))
        if height and radius > SPREAD_SHARE * height:
            spread = True
        else:
            lesions.append(
                SourceLesion(round(cx), round(cy), max(3, round(radius)), severity, "CALC")
            )
    return lesions, spread, names


def read(root: Path, seed: int = 0) -> list[SourceCase]:
    import pydicom

    table = read_table(root)
    files = _dicoms(root)
    missing = sorted(set(table) - set(files))
    if missing:
        raise LayoutError(
            f"INbreast.csv lists {len(missing)} file(s) with no DICOM, e.g. {missing[0]}."
        )
    cases = []
    for number, (path, woman, side, view) in sorted(files.items()):
        row = table.get(number)
        if row is None:
            log.warning("inbreast: %s is not in INbreast.csv (no label): skipped", path.name)
            continue
        given = row.get("laterality", "").upper()[:1]
        if given in ("L", "R") and given != side:
            raise LayoutError(f"{path.name}: INbreast.csv says laterality {given}.")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        modality = str(getattr(ds, "Modality", "")).upper()
        if modality and modality != "MG":
            raise LayoutError(f"{path.name}: Modality {modality}, not MG.")
        tag = str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "")).upper()
        if tag in ("L", "R") and tag != side:
            raise LayoutError(f"{path.name}: the DICOM says laterality {tag}.")
        label = label_of_birads(row["birads"])
        xml = root / "AllXML" / f"{number}.xml"
        rois = read_rois(xml) if xml.is_file() else []
        lesions: list[SourceLesion] = []
        spread, names = False, list[str]()
        if label != "normal":
            lesions, spread, names = lesions_of(rois, label, int(getattr(ds, "Rows", 0)))
            spread = spread or not lesions
        acr = row.get("acr", "")
        cases.append(
            SourceCase(
                path=str(path.relative_to(root)),
                label=label,
                laterality=side,
                split="",
                lesions=list(lesions),
                spread=spread,
                patient=woman,
                view=view,
                density=int(acr) if acr.isdigit() and 1 <= int(acr) <= 4 else None,
                source=NAME,
                findings=names,
            )
        )
    split_of = patient_splits(cases, SPLITS, seed)
    for c in cases:
        c.split = split_of[c.patient]
    log.info("inbreast: %d views of %d women", len(cases), len(split_of))
    return cases
