"""Settings of the gateway (environment prefix ``IRMI_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import REPO_ROOT, ServiceSettings

VAR_DIR = REPO_ROOT / "var"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_GATEWAY_", extra="ignore")

    port: int = 8000
    # Upstreams: one httpx.AsyncClient each.
    tb_url: str = "http://127.0.0.1:8001"
    bc_url: str = "http://127.0.0.1:8002"
    upstream_connect_timeout_s: float = 3.0
    tb_timeout_s: float = Field(default=60.0, description="Read timeout of a chest predict.")
    bc_timeout_s: float = Field(
        default=120.0, description="Longest silence tolerated on a mammography event stream."
    )
    upstream_max_connections: int = 100
    upstream_retry_after_s: int = 5

    # Database: SQLite file (WAL) by default, PostgreSQL via postgresql+asyncpg://...
    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'irmi.db'}"
    database_echo: bool = False
    migrate_on_startup: bool = True

    # Image store: content-addressed; local disk by default, or S3-compatible object storage.
    store: Literal["local", "s3"] = "local"
    store_dir: Path = VAR_DIR / "images"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "irmi-images"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    # Not a SecretStr: the base class would demand it even for the local store.
    s3_secret_access_key: str | None = Field(default=None, repr=False)
    s3_prefix: str = "images/"

    # Auth.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "irmi-gateway"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    password_min_length: int = 10
    login_max_failures: int = Field(
        default=5, description="Failed logins in a row before the account is locked."
    )
    login_lockout_s: int = 15 * 60
    login_rate_per_minute: int = Field(
        default=20, description="Login attempts per client address per minute (per replica)."
    )

    # HTTP.
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8000", "http://127.0.0.1:8000"],
        description="Origins allowed to call the API from a browser.",
    )
    max_views: int = 4
    hsts: bool = False  # turn on behind TLS
    events_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often the replica's one event poller reads new study and "
        "consultation events for all its open streams.",
    )
    stream_max_per_user: int = Field(
        default=16, ge=1, description="Event streams one user may hold open on a replica."
    )
    stream_max_open: int = Field(
        default=2000, ge=1, description="Event streams a replica holds open in all."
    )
    stream_retry_after_s: int = Field(
        default=10, ge=1, description="Retry-After of a stream refused at a cap (503)."
    )
    relay_stale_s: int = Field(
        default=900,
        description="A mammography study with no event for this long is declared failed.",
    )
    exam_attempts: int = Field(
        default=3,
        ge=1,
        description="Submissions of a mammography exam to bc_service, in all, when it is lost "
        "mid-exam (died, overloaded, 5xx); a 4xx fails at once.",
    )
    exam_retry_backoff_s: float = Field(
        default=1.0, ge=0, description="Wait before re-submitting an exam, times the attempt."
    )
    relay_lease_s: float = Field(
        default=15.0,
        gt=0,
        description="A running exam whose relay has not renewed its lease for this long is "
        "adopted by another gateway replica.",
    )
    relay_sweep_s: float = Field(
        default=5.0, gt=0, description="How often each replica looks for exams to adopt."
    )

    @property
    def max_request_bytes(self) -> int:
        """Whole multipart body: up to ``max_views`` files plus form overhead."""
        return self.max_upload_bytes * self.max_views + 1024 * 1024
