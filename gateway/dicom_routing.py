"""Which analysis a received DICOM study gets, from its instances' headers alone.

- CR/DX: a frontal chest film (ViewPosition PA/AP, or none given) goes to tb_service; a
  lateral one is refused (``unsupported_view``). BodyPartExamined is often missing: then the
  film goes on and tb_service's gate decides whether it is a chest X-ray; a body part that is
  given and is not the chest is refused (``not_a_chest_xray``). Several frontal films: the
  first (series, instance number) is analysed; the others are listed as excluded.
- MG: the FOR PRESENTATION images form one exam of up to four views (tag from ImageLaterality
  and ViewPosition, else left for bc_service to detect). FOR PROCESSING images are excluded
  (refused when nothing else is left), tomosynthesis and multi-frame images refuse the study,
  and so does more than one image of one view.
- Anything else is refused (``unsupported_dicom``, reason ``modality``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from shared.errors import IRMIError, NotAChestXray, UnsupportedDicom, UnsupportedView

CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
TOMOSYNTHESIS = {
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.13.1.4",  # Breast Projection X-Ray Image, For Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray Image, For Processing
}
CHEST_CLASSES = {CR, DX_PRESENTATION, DX_PROCESSING}
MAMMO_CLASSES = {MG_PRESENTATION, MG_PROCESSING, *TOMOSYNTHESIS}
LATERAL = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLO", "RLO"}
FRONTAL = {"PA", "AP", ""}
CHEST_PARTS = {"", "CHEST", "THORAX", "LUNG", "CHEST_LUNG"}


@dataclass(frozen=True)
class InstanceInfo:
    """The routing-relevant header of one stored instance (``ref``: its row id)."""

    ref: str
    sop_class_uid: str
    sop_instance_uid: str
    modality: str = ""
    presentation_intent: str = ""
    body_part: str = ""
    view_position: str = ""
    laterality: str = ""
    frames: int = 1
    series_number: int = 0
    instance_number: int = 0


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(value if value is not None else "").strip().upper()


def _number(ds: Any, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError):
        return default


def instance_info(ref: str, data: bytes) -> InstanceInfo:
    """Read an instance's header (no pixel data)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return InstanceInfo(
        ref=ref,
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        modality=_text(ds, "Modality"),
        presentation_intent=_text(ds, "PresentationIntentType"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        frames=_number(ds, "NumberOfFrames", 1),
        series_number=_number(ds, "SeriesNumber", 0),
        instance_number=_number(ds, "InstanceNumber", 0),
    )


@dataclass
class Route:
    """``kind`` chest (one view) or mammography (views tagged ``L-CC``... or None: detect);
    ``excluded``: instances left out, each with why."""

    kind: str
    views: list[tuple[str | None, InstanceInfo]]
    excluded: list[dict[str, str]] = field(default_factory=list)


def _order(info: InstanceInfo) -> tuple[int, int, str]:
    return info.series_number, info.instance_number, info.sop_instance_uid


def _kind(info: InstanceInfo) -> str | None:
    if info.sop_class_uid in MAMMO_CLASSES or info.modality == "MG":
        return "mammography"
    if info.sop_class_uid in CHEST_CLASSES or info.modality in {"CR", "DX"}:
        return "chest"
    return None


def route(infos: list[InstanceInfo]) -> Route:
    """The analysis of a study's instances, or the :class:`IRMIError` that refuses it."""
    kinds = {_kind(i) for i in infos}
    if None in kinds or not kinds:
        modalities = sorted({i.modality or "?" for i in infos})
        raise UnsupportedDicom(
            "IRMI analyses chest radiographs (CR/DX) and mammograms (MG) only.",
            details={"reason": "modality", "modalities": modalities},
        )
    if len(kinds) > 1:
        raise UnsupportedDicom(
            "The study mixes chest radiographs and mammograms; send them as separate studies.",
            details={"reason": "mixed_modalities"},
        )
    ordered = sorted(infos, key=_order)
    return _mammography(ordered) if kinds == {"mammography"} else _chest(ordered)


def _chest(infos: list[InstanceInfo]) -> Route:
    excluded: list[dict[str, str]] = []
    frontal: list[InstanceInfo] = []
    for info in infos:
        if info.body_part not in CHEST_PARTS:
            excluded.append({"sop_instance_uid": info.sop_instance_uid, "reason": "body_part"})
        elif info.view_position in LATERAL or info.view_position not in FRONTAL:
            excluded.append({"sop_instance_uid": info.sop_instance_uid, "reason": "lateral"})
        else:
            frontal.append(info)
    if not frontal:
        error: IRMIError
        if all(e["reason"] == "body_part" for e in excluded):
            error = NotAChestXray(
                "The images are not of the chest (BodyPartExamined).",
                details={"body_parts": sorted({i.body_part for i in infos})},
            )
        else:
            error = UnsupportedView(
                "Only frontal (PA or AP) chest X-rays are screened; this study has lateral "
                "views only.",
                details={"view_positions": sorted({i.view_position for i in infos})},
            )
        raise error
    chosen, *others = frontal
    excluded += [
        {"sop_instance_uid": o.sop_instance_uid, "reason": "another_frontal"} for o in others
    ]
    return Route("chest", [(None, chosen)], excluded)


def _view_tag(info: InstanceInfo) -> str | None:
    side = {"L": "L", "R": "R"}.get(info.laterality)
    view = {"CC": "CC", "MLO": "MLO"}.get(info.view_position)
    return f"{side}-{view}" if side and view else None


def _mammography(infos: list[InstanceInfo]) -> Route:
    excluded: list[dict[str, str]] = []
    views: list[tuple[str | None, InstanceInfo]] = []
    for info in infos:
        if info.sop_class_uid in TOMOSYNTHESIS or info.frames > 1:
            raise UnsupportedDicom(
                "Tomosynthesis (and other multi-frame breast images) is not analysed; send the "
                "2D FOR PRESENTATION views.",
                details={"reason": "tomosynthesis", "sop_instance_uid": info.sop_instance_uid},
            )
        processing = info.sop_class_uid == MG_PROCESSING or info.presentation_intent == (
            "FOR PROCESSING"
        )
        if processing:
            excluded.append({"sop_instance_uid": info.sop_instance_uid, "reason": "for_processing"})
        else:
            views.append((_view_tag(info), info))
    if not views:
        raise UnsupportedDicom(
            "Only FOR PRESENTATION mammograms are analysed; this study has FOR PROCESSING "
            "(raw) images only.",
            details={"reason": "for_processing"},
        )
    tags = [t for t, _ in views if t is not None]
    doubled = sorted({t for t in tags if tags.count(t) > 1})
    if doubled:
        raise UnsupportedDicom(
            "More than one image of one view: IRMI cannot tell which to read; send one image "
            "per view.",
            details={"reason": "multiple_images_per_view", "views": doubled},
        )
    if len(views) > 4:
        raise UnsupportedDicom(
            "A mammography exam has at most four views (L-CC, R-CC, L-MLO, R-MLO).",
            details={"reason": "too_many_views", "views": len(views)},
        )
    return Route("mammography", views, excluded)
