"""Settings of bc_service (environment prefix ``IRMI_BC_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MODELS_DIR = Path(__file__).resolve().parent / "models"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_BC_", extra="ignore")

    port: int = 8002
    models_dir: Path = MODELS_DIR
    # Models that must load before the service reports ready.
    required_models: list[str] = []
