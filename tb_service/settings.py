"""Settings of tb_service (environment prefix ``IRMI_TB_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MODELS_DIR = Path(__file__).resolve().parent / "models"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_TB_", extra="ignore")

    port: int = 8001
    models_dir: Path = MODELS_DIR
    # Models that must load before the service reports ready.
    required_models: list[str] = []
