"""The measured figures of the models behind a study's result, from the inference services'
model cards (``/v2/models/{name}``): what a doctor reads beside the model's label."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter

from gateway.deps import SessionDep, StateDep, StudiesPrincipal
from gateway.schemas import Figure, FigureMetric, ModelFigures, StudyModels
from gateway.studies import load_readable
from shared.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized, error_responses

router = APIRouter(prefix="/v1/studies", tags=["studies"])

METRICS: tuple[str, ...] = get_args(FigureMetric)


def _figure(metric: str, raw: Any, label: str = "") -> Figure | None:
    """A figure written either as a number or as ``{"value", "ci95": [lo, hi]}`` /
    ``{"value", "ci_low", "ci_high"}`` (the two card styles in use)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Figure(metric=metric, value=float(raw), label=label)
    if not isinstance(raw, dict) or not isinstance(raw.get("value"), int | float):
        return None
    ci: tuple[float, float] | None = None
    if isinstance(raw.get("ci95"), list) and len(raw["ci95"]) == 2:
        ci = (float(raw["ci95"][0]), float(raw["ci95"][1]))
    elif isinstance(raw.get("ci_low"), int | float) and isinstance(raw.get("ci_high"), int | float):
        ci = (float(raw["ci_low"]), float(raw["ci_high"]))
    return Figure(metric=metric, value=float(raw["value"]), ci95=ci, label=label)


def card_figures(card: dict[str, Any]) -> list[Figure]:
    """Test-split figures of a card (:data:`METRICS`): a binary model's own, or a
    multi-class model's "malignant" ones (at its operating threshold; AUC malignant vs rest)."""
    test = (card.get("metrics") or {}).get("test") or {}
    if not isinstance(test, dict):
        return []
    found = [_figure(m, test.get(m)) for m in METRICS]
    at = test.get("malignant_at_threshold")
    if isinstance(at, dict):
        found += [_figure(m, at.get(m), "malignant") for m in ("sensitivity", "specificity")]
    found.append(_figure("auc", test.get("auc_malignant_vs_rest"), "malignant"))
    found += oof_figures(card)
    return [f for f in found if f is not None]


OOF_SPLIT = "out-of-fold"
# A card measured by cross-validation (mammo-view/2, mammo-density/1): its headline figures.
OOF_FIGURES = (
    ("auc", "auc_normal_vs_abnormal", "abnormal vs normal breasts"),
    ("auc", "auc_benign_vs_malignant", "malignant vs benign lesions"),
    ("accuracy", "accuracy", "breast density F/G/D"),
    ("quadratic_kappa", "quadratic_kappa", "breast density F/G/D"),
)


def oof_figures(card: dict[str, Any]) -> list[Figure | None]:
    """The out-of-fold figures of a cross-validated card and its operating point's rates."""
    oof = (card.get("metrics") or {}).get("oof")
    if not isinstance(oof, dict):
        return []
    found = [_figure(m, oof.get(key), label) for m, key, label in OOF_FIGURES]
    point = card.get("operating_point")
    if isinstance(point, dict):
        found += [
            _figure(m, point.get(m), "abnormal breasts") for m in ("sensitivity", "specificity")
        ]
    return [f.model_copy(update={"split": OOF_SPLIT}) if f else None for f in found]


@router.get(
    "/{study_id}/models",
    operation_id="getStudyModels",
    response_model=StudyModels,
    summary="The measured figures of the models behind a study's result (from their cards)",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ServiceUnavailable),
)
async def study_models(
    study_id: str, principal: StudiesPrincipal, state: StateDep, session: SessionDep
) -> StudyModels:
    study = await load_readable(session, principal, study_id)
    refs = (study.result or {}).get("models") or []
    await session.commit()  # nothing written: release the connection before the upstream call
    service = "tb_service" if study.kind == "chest" else "bc_service"
    items = []
    for ref in refs:
        name, version = str(ref.get("name")), str(ref.get("version"))
        card = await state.upstreams.model_card(service, name)
        served = str(card.get("version")) if card else None
        items.append(
            ModelFigures(
                name=name,
                version=version,
                card_version=served,
                figures=card_figures(card) if card and served == version else [],
                intended_use=str(card["intended_use"])
                if card and card.get("intended_use")
                else None,
            )
        )
    return StudyModels(items=items)
