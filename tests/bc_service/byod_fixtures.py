"""Small synthetic datasets in the CBIS-DDSM and INbreast layouts, written by the tests:
phantom mammograms (tests.imagegen.mammo_phantom) as real DICOM files (pydicom, Digital
Mammography storage, Modality MG, laterality and view tags), the CSV description files, ROI
mask DICOMs (CBIS-DDSM) and Apple-plist ROI files (INbreast). Each fixture returns what it
drew, so the tests compare the readers' records with the truth."""

from __future__ import annotations

import csv
import plistlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tests.imagegen import mammo_phantom

H, W = 320, 256  # small full images: the pipeline works at 512 px high anyway


@dataclass
class Drawn:
    """One view as drawn: the file, its truth, and its lesions (x, y, radius) in pixels."""

    path: str
    patient: str
    side: str
    view: str
    label: str
    lesions: list[tuple[int, int, int]] = field(default_factory=list)


def write_mg(
    path: Path,
    pixels: np.ndarray,
    *,
    patient: str,
    side: str | None,
    view: str | None,
    series: str = "full mammogram images",
) -> None:
    """A DICOM file of ``pixels`` as a mammography modality writes it."""
    from pydicom import uid
    from pydicom.dataset import FileDataset, FileMetaDataset

    mg_storage = uid.DigitalMammographyXRayImageStorageForPresentation

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = mg_storage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = mg_storage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.Modality = "MG"
    ds.PatientID = patient
    ds.SeriesDescription = series
    if side is not None:
        ds.ImageLaterality = side
    if view is not None:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    if pixels.dtype == np.uint16:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _phantom(side: str, view: str, lesion: tuple[int, int, int] | None, seed: int) -> np.ndarray:
    """A phantom with the chest wall on the breast's side (R on the right, as displayed),
    ``lesion`` in final image coordinates; 12-bit values."""
    right = side == "R"
    drawn = None
    if lesion is not None:
        x, y, r = lesion
        drawn = (W - 1 - x if right else x, y, r)
    img = mammo_phantom(
        H, W, chest_wall="right" if right else "left", view=view, lesion=drawn, seed=seed
    )
    return img.astype(np.uint16) * 16


def _disc(x: int, y: int, r: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, (x, y), r, 255, -1)
    return mask


# --------------------------------------------------------------------------- CBIS-DDSM

CBIS_COLUMNS = {
    "mass": [
        "patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
        "abnormality type", "mass shape", "mass margins", "assessment", "pathology",
        "subtlety", "image file path", "cropped image file path", "ROI mask file path",
    ],
    "calc": [
        "patient_id", "breast density", "left or right breast", "image view", "abnormality id",
        "abnormality type", "calc type", "calc distribution", "assessment", "pathology",
        "subtlety", "image file path", "cropped image file path", "ROI mask file path",
    ],
}  # fmt: skip
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")


def cbis_ddsm(root: Path, women: int = 8) -> list[Drawn]:
    """Masses in the training file at the paths the CSV gives (UID folders, 000000.dcm);
    calcifications in the test file as the TCIA download names them (1-1.dcm, 1-2.dcm, the
    mask told by its series description), so both ways of finding a file are exercised.
    Women 0-5 are train, 6-7 test; woman 1 has a second, benign mass in her left MLO."""
    drawn: list[Drawn] = []
    rows: dict[str, list[dict[str, str]]] = {"mass_train": [], "calc_test": []}
    for i in range(women):
        patient = f"P_{i + 1:05d}"
        test = i >= women - 2
        kind, split = ("calc", "Test") if test else ("mass", "Training")
        for side, view in (("L", "CC"), ("L", "MLO"), ("R", "MLO")):
            pathology = PATHOLOGIES[(i + len(drawn)) % 3]
            lesion = (80 + 10 * i, 140 + 8 * i, 18 + i)
            lesions = [lesion]
            if i == 1 and (side, view) == ("L", "MLO"):
                lesions.append((130, 230, 12))
            folder = (
                f"{kind.capitalize()}-{split}_{patient}_{'LEFT' if side == 'L' else 'RIGHT'}_{view}"
            )
            pixels = _phantom(side, view, lesion, seed=i)
            image_rel = f"{folder}/1.3.6.1.4.1.9590.{i}.1/1.3.6.1.4.1.9590.{i}.2/000000.dcm"
            if test:
                series = root / "CBIS-DDSM" / folder / "08-07-2016-DDSM-1" / "1.000000-full-1"
                write_mg(series / "1-1.dcm", pixels, patient=folder, side=None, view=None)
            else:
                write_mg(root / image_rel, pixels, patient=folder, side=side, view=view)
            for k, (x, y, r) in enumerate(lesions, start=1):
                roi = f"{folder}_{k}"
                mask_rel = f"{roi}/1.3.6.1.4.1.9590.{i}.{k}.3/1.3.6.1.4.1.9590.{i}.{k}.4/000001.dcm"
                crop_rel = mask_rel.replace("000001.dcm", "000000.dcm")
                crop = (pixels[max(0, y - r) : y + r, max(0, x - r) : x + r] // 16).astype(np.uint8)
                if test:
                    series = root / "CBIS-DDSM" / roi / "08-07-2016-DDSM-2" / "1.000000-ROI-1"
                    write_mg(series / "1-1.dcm", crop, patient=roi, side=None, view=None,
                             series="cropped images")  # fmt: skip
                    write_mg(series / "1-2.dcm", _disc(x, y, r), patient=roi, side=None,
                             view=None, series="ROI mask images")  # fmt: skip
                else:
                    write_mg(root / crop_rel, crop, patient=roi, side=None, view=None)
                    write_mg(root / mask_rel, _disc(x, y, r), patient=roi, side=None, view=None)
                row = {
                    "patient_id": patient,
                    "breast_density": str(1 + i % 4),
                    "breast density": str(1 + i % 4),
                    "left or right breast": "LEFT" if side == "L" else "RIGHT",
                    "image view": view,
                    "abnormality id": str(k),
                    "abnormality type": "calcification" if test else "mass",
                    "mass shape": "OVAL",
                    "mass margins": "SPICULATED" if pathology == "MALIGNANT" else "CIRCUMSCRIBED",
                    "calc type": "PLEOMORPHIC",
                    "calc distribution": "CLUSTERED",
                    "assessment": "4",
                    "pathology": pathology if k == 1 else "BENIGN",
                    "subtlety": "3",
                    "image file path": image_rel,
                    "cropped image file path": crop_rel,
                    "ROI mask file path": mask_rel + "\n",  # as released: a stray newline
                }
                rows["calc_test" if test else "mass_train"].append(row)
            label = "malignant" if pathology == "MALIGNANT" else "benign"
            drawn.append(Drawn(image_rel, patient, side, view, label, lesions))
    for key, kind, split in (("mass_train", "mass", "train"), ("calc_test", "calc", "test")):
        with (root / f"{kind}_case_description_{split}_set.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, CBIS_COLUMNS[kind], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows[key])
    return drawn


# --------------------------------------------------------------------------- INbreast

INBREAST_COLUMNS = [
    "Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name", "ACR",
    "Bi-Rads",
]  # fmt: skip
BIRADS = ("1", "2", "4c", "5", "1", "3")


def _roi(name: str, points: list[tuple[float, float]]) -> dict[str, object]:
    return {
        "Name": name,
        "NumberOfPoints": len(points),
        "Point_px": [f"({x:.2f}, {y:.2f})" for x, y in points],
        "Point_mm": [f"({x * 0.07:.3f}, {y * 0.07:.3f}, 0)" for x, y in points],
        "Area": 0.0,
        "Type": 15 if len(points) > 2 else 19,
    }


def circle_points(x: int, y: int, r: int, n: int = 24) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(x + r * float(np.cos(a)), y + r * float(np.sin(a))) for a in t]


def inbreast(root: Path, women: int = 10) -> list[Drawn]:
    """Four views per woman; BI-RADS per woman cycles through 1, 2, 4c, 5, 1, 3 (both breasts
    alike: the lesion view is her left MLO and left CC, the right breast normal BI-RADS 1).
    Lesion views have a mass outline, a pectoral-muscle ROI (not a lesion) and, in the CC
    view, three calcification marks close together (one joined lesion)."""
    drawn: list[Drawn] = []
    table = []
    for i in range(women):
        woman = f"{(i + 1) * 7919:x}a{i:03d}"
        birads = BIRADS[i % len(BIRADS)]
        for j, (side, view) in enumerate((("L", "CC"), ("L", "ML"), ("R", "CC"), ("R", "ML"))):
            number = str(20586900 + 10 * i + j)
            name = f"{number}_{woman}_MG_{side}_{view}_ANON.dcm"
            kind = "MLO" if view == "ML" else "CC"
            rads = birads if side == "L" else "1"
            label = {"1": "normal", "2": "benign", "3": "benign"}.get(rads, "malignant")
            lesion = (90 + 5 * i, 150 + 6 * i, 16 + i % 5) if label != "normal" else None
            pixels = _phantom(side, kind, lesion, seed=100 + i * 4 + j)
            write_mg(root / "AllDICOMs" / name, pixels, patient="removed", side=side, view=view)
            lesions: list[tuple[int, int, int]] = []
            if lesion is not None:
                rois = [
                    _roi("Mass", circle_points(*lesion)),
                    _roi("Pectoral Muscle", [(0, 0), (60, 0), (0, 90)]),
                ]
                lesions.append(lesion)
                if kind == "CC":
                    marks = [(200.0, 60.0), (206.0, 64.0), (202.0, 70.0)]
                    rois += [_roi("Calcification", [p]) for p in marks]
                    lesions.append((203, 65, 5))
                doc = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}
                (root / "AllXML").mkdir(parents=True, exist_ok=True)
                (root / "AllXML" / f"{number}.xml").write_bytes(
                    plistlib.dumps(doc, fmt=plistlib.FMT_XML)
                )
            table.append([
                "removed", "", side, "MLO" if view == "ML" else "CC", "201001", number,
                str(1 + i % 4), rads,
            ])  # fmt: skip
            drawn.append(Drawn(f"AllDICOMs/{name}", woman, side, kind, label, lesions))
    with (root / "INbreast.csv").open("w", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(INBREAST_COLUMNS)
        w.writerows(table)
    return drawn
