"""Routing of received studies by their headers (gateway/dicom_routing.py), on small
synthetic headers: each rule of the issue, and that a refusal says why."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.dicom_routing import (
    CR,
    DX_PRESENTATION,
    MG_PRESENTATION,
    MG_PROCESSING,
    InstanceInfo,
    instance_info,
    route,
)
from shared.errors import IRMIError
from shared.imaging import encode_dicom

TOMO = "1.2.840.10008.5.1.4.1.1.13.1.3"


def dx(
    ref: str, view: str = "PA", body: str = "", n: int = 1, cls: str = DX_PRESENTATION
) -> InstanceInfo:
    return InstanceInfo(ref, cls, f"1.2.3.{ref}", "DX", "FOR PRESENTATION", body, view, "", 1, 1, n)


def mg(
    ref: str,
    tag: str | None,
    intent: str = "FOR PRESENTATION",
    cls: str = MG_PRESENTATION,
    frames: int = 1,
) -> InstanceInfo:
    side, view = tag.split("-") if tag else ("", "")
    return InstanceInfo(ref, cls, f"1.2.3.{ref}", "MG", intent, "BREAST", view, side, frames)


def refusal(infos: list[InstanceInfo]) -> IRMIError:
    with pytest.raises(IRMIError) as caught:
        route(infos)
    return caught.value


def test_frontal_chest_goes_to_tb_with_or_without_body_part() -> None:
    for body in ("", "CHEST"):
        plan = route([dx("a", "PA", body)])
        assert plan.kind == "chest" and [i.ref for _, i in plan.views] == ["a"]
    assert route([dx("a", "")]).kind == "chest"  # no ViewPosition: the gate decides
    assert route([InstanceInfo("c", CR, "1.2.9", "CR")]).kind == "chest"


def test_lateral_is_excluded_and_alone_is_unsupported_view() -> None:
    plan = route([dx("lat", "LL", n=1), dx("pa", "PA", n=2)])
    assert [i.ref for _, i in plan.views] == ["pa"]
    assert plan.excluded == [{"sop_instance_uid": "1.2.3.lat", "reason": "lateral"}]
    err = refusal([dx("lat", "LATERAL")])
    assert err.code == "unsupported_view" and err.details["view_positions"] == ["LATERAL"]


def test_a_body_part_other_than_the_chest_is_refused() -> None:
    err = refusal([dx("k", "AP", "KNEE")])
    assert err.code == "not_a_chest_xray"


def test_several_frontal_films_analyse_the_first_and_list_the_others() -> None:
    plan = route([dx("b", n=2), dx("a", n=1)])
    assert [i.ref for _, i in plan.views] == ["a"]
    assert plan.excluded == [{"sop_instance_uid": "1.2.3.b", "reason": "another_frontal"}]


def test_mammography_exam_of_up_to_four_tagged_views() -> None:
    plan = route([mg("1", "L-CC"), mg("2", "R-CC"), mg("3", "L-MLO"), mg("4", "R-MLO")])
    assert plan.kind == "mammography"
    assert sorted(t for t, _ in plan.views if t) == ["L-CC", "L-MLO", "R-CC", "R-MLO"]
    untagged = route([mg("1", None)])
    assert untagged.views[0][0] is None  # bc_service detects the view


def test_for_processing_is_excluded_or_refused() -> None:
    plan = route([mg("1", "L-MLO"), mg("2", "L-MLO", "FOR PROCESSING", MG_PROCESSING)])
    assert [i.ref for _, i in plan.views] == ["1"]
    assert plan.excluded[0]["reason"] == "for_processing"
    err = refusal([mg("2", "L-MLO", "FOR PROCESSING", MG_PROCESSING)])
    assert err.code == "unsupported_dicom" and err.details["reason"] == "for_processing"


def test_tomosynthesis_and_doubled_views_are_refused() -> None:
    assert refusal([mg("1", "L-CC", cls=TOMO)]).details["reason"] == "tomosynthesis"
    assert refusal([mg("1", "L-CC", frames=40)]).details["reason"] == "tomosynthesis"
    err = refusal([mg("1", "L-CC"), mg("2", "L-CC"), mg("3", "R-CC")])
    assert err.details == {"reason": "multiple_images_per_view", "views": ["L-CC"]}
    assert refusal([mg(str(i), None) for i in range(5)]).details["reason"] == "too_many_views"


def test_other_modalities_and_mixtures_are_refused() -> None:
    ct = InstanceInfo("ct", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.ct", "CT")
    assert refusal([ct]).details["reason"] == "modality"
    assert refusal([dx("a"), mg("b", "L-CC")]).details["reason"] == "mixed_modalities"


def test_instance_info_reads_the_header_of_a_real_file() -> None:
    data = encode_dicom(
        np.zeros((8, 8), np.uint8),
        modality="MG",
        extra={
            "ImageLaterality": "R",
            "ViewPosition": "CC",
            "PresentationIntentType": "FOR PROCESSING",
        },
    )
    info = instance_info("x", data)
    assert (info.modality, info.laterality, info.view_position) == ("MG", "R", "CC")
    assert info.presentation_intent == "FOR PROCESSING" and info.frames == 1
