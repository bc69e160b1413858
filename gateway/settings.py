"""Settings of the gateway (environment prefix ``IRMI_GATEWAY_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import REPO_ROOT, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_GATEWAY_", extra="ignore")

    port: int = 8000
    tb_url: str = "http://127.0.0.1:8001"
    bc_url: str = "http://127.0.0.1:8002"
    database_url: str = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'irmi.db'}"
    jwt_secret: SecretStr | None = None
