"""An exam from its views: each view read again with the other breast's view of the same kind
(mammo-view/2's bilateral head) where the exam has it, else left as read from its own breast
(the unilateral head, at its own operating point, said in the exam's notes); then per breast
(flagged iff any of its views is; score the highest of its views; density the mean of its
views; the malignancy estimate only for a flagged breast and only while the card allows it)
and per exam (flagged iff any breast is; score the highest breast's). So view, breast and
exam categories agree by construction."""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

import numpy as np

from shared.contracts.mammo import (
    DENSE_NOTE,
    BreastResult,
    Density,
    DensityClass,
    ExamResult,
    ViewResult,
)
from shared.contracts.screening import Category

if TYPE_CHECKING:
    from bc_service.pipeline.mammo import MammoPipeline

SIDE = {"L": "left", "R": "right"}
OTHER = {"L": "R", "R": "L"}
DENSITY_CLASSES: tuple[DensityClass, ...] = get_args(DensityClass)


def _partner(view: ViewResult, views: list[ViewResult]) -> ViewResult | None:
    """The first view of the other breast with the same view kind (CC with CC, MLO with MLO)."""
    for other in views:
        if other.laterality == OTHER[view.laterality] and other.view == view.view:
            return other
    return None


def read_bilateral(pipe: MammoPipeline, views: list[ViewResult]) -> None:
    """Each view with a partner: its score and category from the bilateral head."""
    from bc_service.pipeline.mammo import suspicion

    probs = {}
    for v in views:
        other = _partner(v, views)
        p = pipe.bilateral_probability(v, other) if other is not None else None
        if p is not None:
            probs[v.view_id] = p
    for v in views:  # only once every view was read against the other's unilateral state
        if v.view_id in probs:
            v.score = suspicion(probs[v.view_id])
            v.comparison = "contralateral"
            v.score_threshold = pipe.score_threshold
            v.category = pipe.category(v.score, pipe.score_threshold)


def _density(views: list[ViewResult]) -> Density | None:
    found = [v._density for v in views if v._density is not None]
    if not found:
        return None
    mean = np.mean(np.asarray(found, np.float64), axis=0)
    category = DENSITY_CLASSES[int(np.argmax(mean))]
    return Density(
        category=category,
        probabilities={c: round(float(p), 4) for c, p in zip(DENSITY_CLASSES, mean, strict=True)},
        note=DENSE_NOTE if category == "dense_glandular" else "",
    )


def _breast(pipe: MammoPipeline, lat: str, mine: list[ViewResult]) -> BreastResult:
    flagged = any(v.category != Category.no_finding_flagged for v in mine)
    category = Category.review_recommended if flagged else Category.no_finding_flagged
    if any(v.category == Category.outside_population for v in mine):
        category = Category.outside_population
    malignancy = None
    if flagged and pipe.malignancy_shown:
        found = [v._malignancy for v in mine if v._malignancy is not None]
        malignancy = round(max(found), 4) if found else None
    return BreastResult(
        laterality=lat,
        views=[v.view_id for v in mine],
        score=max(v.score for v in mine),
        category=category,
        comparison="contralateral"
        if all(v.comparison == "contralateral" for v in mine)
        else "unilateral",
        density=_density(mine),
        malignancy=malignancy,
    )


def _notes(breasts: list[BreastResult], views: list[ViewResult]) -> list[str]:
    notes = []
    for b in breasts:
        alone = [
            v.tag for v in views if v.laterality == b.laterality and v.comparison == "unilateral"
        ]
        if alone:
            notes.append(
                f"The {SIDE[b.laterality]} breast's {', '.join(alone)} had no "
                f"{SIDE[OTHER[b.laterality]]}-breast view of the same kind to compare with: it "
                "was read from that breast alone, by the weaker unilateral model at its own "
                "operating point."
            )
        if b.density is not None and b.density.note:
            notes.append(f"The {SIDE[b.laterality]} breast looks dense. {b.density.note}")
    return notes


def combine_exam(pipe: MammoPipeline, views: list[ViewResult]) -> ExamResult:
    read_bilateral(pipe, views)
    breasts = []
    for lat in ("L", "R"):
        mine = [v for v in views if v.laterality == lat]
        if mine:
            breasts.append(_breast(pipe, lat, mine))
    flagged = any(b.category != Category.no_finding_flagged for b in breasts)
    category = Category.review_recommended if flagged else Category.no_finding_flagged
    if any(b.category == Category.outside_population for b in breasts):
        category = Category.outside_population
    timings: dict[str, float] = {}
    for v in views:
        for k, ms in v.timings_ms.items():
            timings[k] = round(timings.get(k, 0.0) + ms, 2)
    return ExamResult(
        views=views,
        breasts=breasts,
        score=max((b.score for b in breasts), default=0.0),
        category=category,
        operating_point=pipe.operating_point,
        unilateral_operating_point=pipe.unilateral_point,
        score_threshold=pipe.score_threshold,
        notes=_notes(breasts, views),
        malignancy_note=pipe.malignancy_note,
        models=pipe.model_refs(),
        timings_ms=timings,
    )
