"""Settings of bc_service (environment prefix ``IRMI_BC_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MODELS_DIR = Path(__file__).resolve().parent / "models"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_BC_", extra="ignore")

    port: int = 8002
    models_dir: Path = MODELS_DIR
    # Models that must load before the service starts. None: the pipeline's own list
    # (mammo-gate, mammo-patch, mammo-view); [] lets it start on heuristic fallbacks (dev).
    required_models: list[str] | None = None
    # Refuse to start when a card's recorded preprocessing steps differ from the code's.
    strict_preprocessing: bool = True

    # --- exam jobs
    workers: int = Field(default=2, ge=1, description="Exams (or /v1/predict calls) run at once.")
    max_queued_exams: int = Field(
        default=8, ge=0, description="Exams admitted beyond `workers`; more → 503 overloaded."
    )
    exam_ttl_seconds: float = Field(
        default=900.0, gt=0, description="How long a finished exam (and its event log) is kept."
    )
    max_exams: int = Field(
        default=100,
        ge=1,
        description=(
            "Most exams kept in memory, the oldest finished evicted first (a finished 4-view "
            "exam holds some tens of KB of JSON; megabytes with the deprecated `heatmaps`)."
        ),
    )
    heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="Interval of SSE comment pings on an idle stream."
    )
    max_views: int = Field(default=4, ge=1, le=4)
    max_request_bytes: int = Field(
        default=220 * 1024 * 1024, description="Largest multipart body (all views together)."
    )
    advertise_url: str = Field(
        default="",
        description=(
            "Absolute base URL of THIS replica (e.g. http://$(POD_IP):8002). When set, the "
            "status_url/events_url of an exam point straight at the replica that holds it."
        ),
    )
    patch_batch_size: int = Field(default=64, ge=1)
    heatmaps: bool = Field(
        default=False,
        description="Deprecated: also inline the full-size benign and malignant overlay PNGs "
        "in every view (megabytes per exam). Every view carries its small `score_map`.",
    )
    mammogram_gate: bool = Field(
        default=True,
        description="Tests/dev only: false skips the mammogram-or-not model (synthetic images).",
    )
    debug_stage_delay_ms: float = Field(
        default=0.0,
        ge=0,
        description="Tests/dev only: sleep this long at every stage boundary of a job.",
    )
