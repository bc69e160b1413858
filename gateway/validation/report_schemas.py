"""The typed shape of a validation report (what :mod:`gateway.validation.report` builds)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.contracts.common import ModelRef
from shared.contracts.screening import OperatingPoint


class Estimate(BaseModel):
    """A figure with its 95% percentile bootstrap interval (None where undefined: a rate
    with no film in its denominator)."""

    value: float | None
    ci95: list[float | None]
    ci_low: float | None
    ci_high: float | None
    n: int


class Counts(BaseModel):
    tp: int
    tn: int
    fp: int
    fn: int


class PointFigures(BaseModel):
    score_threshold: float = Field(description="On the 0-100 score: at or above is flagged.")
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    counts: Counts


class Candidate(PointFigures):
    name: str = Field(examples=["sensitivity_0.90", "youden"])
    in_sample: bool = Field(description="Chosen on these films: its figures are optimistic.")
    target_sensitivity: float | None = None
    threshold_ci95: list[float] = Field(
        description="The threshold's 95% interval when chosen again on bootstrap resamples."
    )
    out_of_bag_sensitivity: float | None = Field(
        description="Mean sensitivity on the films a resample left out, at the threshold "
        "chosen on that resample: less optimistic than the in-sample figure."
    )


class GroupSummary(BaseModel):
    n: int
    positives: int
    negatives: int
    outside_population: Estimate = Field(description="Share flagged outside_population.")
    auc: Estimate | None = Field(description="None unless both classes are present.")
    current: PointFigures | None = Field(description="At the current operating point.")


class RocCurve(BaseModel):
    fpr: list[float]
    tpr: list[float]


class CalibrationBin(BaseModel):
    lo: float
    hi: float
    conf: float = Field(description="Mean predicted probability in the bin.")
    freq: float = Field(description="Observed share of positives in the bin.")
    n: int


class Calibration(BaseModel):
    ece: float = Field(description="Expected calibration error over 10 equal-width bins.")
    bins: list[CalibrationBin]


class PopulationSummary(BaseModel):
    films: int = Field(description="Films with a position in the model's population space.")
    share_within_limit_of_run_mean: float = Field(
        description="Share of these films within the model's limit of their own mean: what "
        "adopting the run would count as inside the validated population."
    )


class ValidationReport(BaseModel):
    run_id: str
    modality: str
    target: str
    model: ModelRef | None = Field(description="The model that scored the films.")
    generated_at: datetime
    current_point: OperatingPoint | None = Field(
        description="The point the films are read at now: the site's for this model, else "
        "the one the service returned (its card's)."
    )
    failures: dict[str, int] = Field(description="Units the service refused, by error code.")
    overall: GroupSummary | None
    candidates: list[Candidate]
    roc: RocCurve | None
    calibration: Calibration | None
    subgroups: dict[str, dict[str, GroupSummary]] = Field(
        description="Per CSV subgroup column, per value."
    )
    population: PopulationSummary | None
    warnings: list[str]
    notes: list[str]
