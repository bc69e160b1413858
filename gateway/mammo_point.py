"""The effective operating point of a new mammography result: the mammography side of
:mod:`gateway.operating_point`, with the same site points (:mod:`gateway.validation.site`).

A site point adopted from a mammography run is tied to the mammo-view model it was measured
on (name, version, sha256) and to how that run's breasts were read (``choice.comparison``:
with the other breast, or from one breast alone). It replaces the card's point for views read
that way only; views read the other way keep the card's point, since nothing was measured
locally for them (so a point adopted from both-breast readings leaves the one-breast point at
the card's, and the result's note says so). Categories are then re-derived with the shared
:func:`~shared.contracts.screening.categorize` and folded as bc_service folds them: a breast is
flagged iff any of its views is, the exam iff any breast is, and ``outside_population`` wins,
so view, breast and exam agree by construction. The result carries the point it used (its
``operating_point`` / ``unilateral_operating_point``, ``source`` ``site``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.operating_point import active_site_point
from gateway.state import GatewayState
from gateway.validation import site
from gateway.validation.site import COMPARISON_WORDS
from shared.contracts.mammo import ExamResult
from shared.contracts.screening import Category, OperatingPoint, categorize


def fold(categories: list[Category]) -> Category:
    """The category of a breast from its views' (of an exam from its breasts')."""
    if Category.outside_population in categories:
        return Category.outside_population
    if any(c == Category.review_recommended for c in categories):
        return Category.review_recommended
    return Category.no_finding_flagged


async def effective_exam(
    state: GatewayState, result: ExamResult, session: AsyncSession | None = None
) -> ExamResult:
    """``result`` read at the site's point where one applies (see module); a copy.
    ``session``: the caller's, when it holds one (:func:`active_site_point`)."""
    adopted = await active_site_point(state, "mammography", session)
    if adopted is None:
        return result
    comparison = str((adopted.choice or {}).get("comparison") or "unilateral")
    out = result.model_copy(deep=True)
    alone = comparison == "unilateral"
    card = out.unilateral_operating_point if alone else out.operating_point
    if card is None or not site.applies(adopted, card.model):
        model = card.model if card is not None else None
        what = f"{model.name} {model.version} (sha256 {model.sha256[:12]})" if model else "none"
        out.notes.append(
            f"The site point v{adopted.version} was measured on {adopted.model_name} "
            f"{adopted.model_version} (sha256 {adopted.model_sha256[:12]}); this result comes "
            f"from {what}, so it is read at the model card's points. Validate this model "
            "version on local films and adopt a point for it."
        )
        return out
    point = OperatingPoint.model_validate(adopted.point)
    for v in out.views:
        if v.comparison == comparison:
            v.score_threshold = point.score_threshold
            if v.category != Category.outside_population:
                v.category = categorize(v.score, point)
    for b in out.breasts:
        b.category = fold([v.category for v in out.views if v.view_id in b.views])
    out.category = fold([b.category for b in out.breasts])
    if alone:
        out.unilateral_operating_point = point
    else:
        out.operating_point, out.score_threshold = point, point.score_threshold
    other = "contralateral" if alone else "unilateral"
    out.notes.append(
        f"Views read {COMPARISON_WORDS[comparison]} were read at this site's operating point "
        f"v{adopted.version} (score >= {point.score_threshold:g}, from validation run "
        f"{adopted.run_id}); views read {COMPARISON_WORDS[other]} stay at the model card's "
        "point, since the site's films were not read that way."
    )
    return out
