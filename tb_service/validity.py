"""What a DICOM upload's own header says about it, before any model looks (validity, item 4).

The validity gate judges pixels; a DICOM file also says what it is. Where the header is
explicit, it is evidence we use:

* a modality that is no projection radiograph (mammography MG, CT, MR, ultrasound, nuclear
  medicine, photographs XC/OP/ES, ...) -> ``not_a_chest_xray``;
* a body part that is clearly not the chest (hand, knee, skull, abdomen, breast, ...) ->
  ``not_a_chest_xray``;
* a lateral view (ViewPosition LL / RL / LATERAL) -> ``unsupported_view``: the screen was
  trained and validated on frontal films only;
* any other view that is neither PA nor AP (decubitus, oblique, ...) -> the reliability reason
  ``unvalidated_view`` (scored, flagged).

Absent, empty or unknown values decide nothing: PNG and JPEG uploads carry no header, and the
gate (and the reliability flag) carry those.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.contracts.screening import ReliabilityReason
from shared.errors import NotAChestXray, UnsupportedView

NOT_RADIOGRAPHS = {
    "MG": "mammogram",
    "CT": "CT",
    "MR": "MR",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "PET",
    "XC": "photograph",
    "OP": "ophthalmic photograph",
    "ES": "endoscopy",
    "SM": "slide microscopy",
    "IO": "intra-oral radiograph",
    "PX": "panoramic dental radiograph",
    "ECG": "ECG",
    "DOC": "document",
}
OTHER_BODY_PARTS = {
    "ABDOMEN", "ANKLE", "ARM", "BREAST", "CSPINE", "ELBOW", "EXTREMITY", "FEMUR", "FINGER",
    "FOOT", "FOREARM", "HAND", "HEAD", "HEEL", "HIP", "HUMERUS", "JAW", "KNEE", "LEG",
    "LSPINE", "PELVIS", "SHOULDER", "SKULL", "SPINE", "TIBIA", "TOE", "TSPINE", "WRIST",
}  # fmt: skip
LATERAL_VIEWS = {"LL", "RL", "LATERAL", "LAT"}
FRONTAL_VIEWS = {"PA", "AP"}


def _tag(meta: Mapping[str, str], key: str) -> str:
    return str(meta.get(key, "")).strip().upper().replace(" ", "").replace("-", "")


def check_header(meta: Mapping[str, str]) -> list[ReliabilityReason]:
    """Refuse what the header says is no frontal chest radiograph; the reasons it raises."""
    modality = _tag(meta, "Modality")
    if modality in NOT_RADIOGRAPHS:
        raise NotAChestXray(
            f"The DICOM file is a {NOT_RADIOGRAPHS[modality]} (Modality {modality}), not a "
            "chest X-ray.",
            details={"reason": "dicom_modality", "modality": modality},
        )
    part = _tag(meta, "BodyPartExamined")
    if part in OTHER_BODY_PARTS:
        raise NotAChestXray(
            f"The DICOM file shows the {part.lower()}, not the chest.",
            details={"reason": "dicom_body_part", "body_part": part},
        )
    view = _tag(meta, "ViewPosition")
    if view in LATERAL_VIEWS:
        raise UnsupportedView(
            "Lateral chest films are not screened: send the frontal (PA or AP) film.",
            details={"reason": "lateral_view", "view_position": view},
        )
    if view and view not in FRONTAL_VIEWS:
        return [ReliabilityReason.unvalidated_view]
    return []
