"""DICOM files made at test time from real films of the test splits in IRMI_DATA_DIR (chest:
nih-cxr14 and kermany-pediatric; mammography: mini-mias), written with pydicom as an X-ray unit
or a mammography unit would (12-bit pixels, patient and study modules). Nothing is committed."""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.dicom_routing import DX_PRESENTATION, MG_PRESENTATION, MG_PROCESSING, TOMOSYNTHESIS
from shared.settings import default_data_dir

TOMO = sorted(TOMOSYNTHESIS)[0]


def _test_split(folder: str) -> list[Path]:
    root = default_data_dir() / folder
    if not (root / "splits.csv").exists():
        return []
    with (root / "splits.csv").open() as fh:
        return [root / r["path"] for r in csv.DictReader(fh) if r["split"] == "test"]


@cache
def chest_films() -> list[Path]:
    """Test-split chest films, NIH and pediatric alternating."""
    nih, kermany = _test_split("nih-cxr14"), _test_split("kermany-pediatric")
    out = [p for pair in zip(nih, kermany, strict=False) for p in pair]
    return [p for p in out if p.exists()]


@cache
def mammo_women() -> list[list[tuple[Path, str]]]:
    """Per test-split mini-mias woman with both breasts: [(film, "L-MLO"), (film, "R-MLO")]."""
    root = default_data_dir() / "mini-mias"
    if not (root / "labels.csv").exists():
        return []
    test = {p.name for p in _test_split("mini-mias")}
    by_woman: dict[str, list[tuple[Path, str]]] = {}
    with (root / "labels.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["path"] in test:
                tag = f"{r['laterality']}-{r['view']}"
                by_woman.setdefault(r["patient_id"], []).append((root / r["path"], tag))
    return [sorted(v, key=lambda x: x[1]) for v in by_woman.values() if len(v) == 2]


def have_data() -> bool:
    return bool(chest_films()) and bool(mammo_women())


def _pixels(path: Path, frames: int = 1) -> np.ndarray:
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 16  # 12-bit
    return np.stack([gray] * frames) if frames > 1 else gray


def _dataset(
    pixels: np.ndarray,
    *,
    sop_class: str,
    modality: str,
    study_uid: str,
    patient_id: str,
    series_number: int = 1,
    instance_number: int = 1,
    **extra: object,
) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientName, ds.PatientID = f"Test^{patient_id}", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20261201", "101500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = f"ACC{patient_id}"[:16], ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, instance_number
    ds.Manufacturer = "IRMI test unit"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in extra.items():
        if value is not None:
            setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def chest_dicom(
    film: Path,
    study_uid: str,
    patient_id: str,
    view_position: str | None = "PA",
    body_part: str | None = None,
    instance_number: int = 1,
) -> bytes:
    """A DX For Presentation chest film (BodyPartExamined left out unless given)."""
    return _dataset(
        _pixels(film),
        sop_class=DX_PRESENTATION,
        modality="DX",
        study_uid=study_uid,
        patient_id=patient_id,
        instance_number=instance_number,
        PresentationIntentType="FOR PRESENTATION",
        ViewPosition=view_position,
        BodyPartExamined=body_part,
    )


def mammo_dicom(
    film: Path,
    tag: str,
    study_uid: str,
    patient_id: str,
    intent: str = "FOR PRESENTATION",
    frames: int = 1,
    instance_number: int = 1,
) -> bytes:
    """A digital mammogram of one view (``tag`` like L-MLO); FOR PROCESSING or tomosynthesis
    (``frames`` > 1) on request."""
    side, view = tag.split("-")
    sop_class = MG_PROCESSING if intent == "FOR PROCESSING" else MG_PRESENTATION
    if frames > 1:
        sop_class = TOMO
    return _dataset(
        _pixels(film, frames),
        sop_class=sop_class,
        modality="MG",
        study_uid=study_uid,
        patient_id=patient_id,
        instance_number=instance_number,
        PresentationIntentType=intent,
        ImageLaterality=side,
        ViewPosition=view,
        BodyPartExamined="BREAST",
    )
