"""Settings of the gateway (environment prefix ``IRMI_GATEWAY_``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.dicom_settings import DicomSettings
from shared.settings import REPO_ROOT, ServiceSettings

VAR_DIR = REPO_ROOT / "var"
MIN_JWT_SECRET_BYTES = 32
MISSING_STORE_KEY = (
    "IRMI_GATEWAY_STORE_KEYS must be set: the image store is encrypted at rest "
    "(or run with IRMI_DEV_MODE=1 to generate a development key)"
)


class Settings(ServiceSettings, DicomSettings):
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
    upstream_keepalive_s: float = Field(
        default=2.0,
        gt=0,
        description="Idle upstream connections are closed after this long; keep it below the "
        "inference services' HTTP_KEEP_ALIVE_S (5 s) so the gateway never reuses a connection "
        "they are closing.",
    )
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
    # Encryption at rest of the store (AES-256-GCM): {"<key id>": "<base64 of 32 bytes>"}.
    # Rotation: add a key, make it current; keep the old ones for reading (gateway/README.md).
    store_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        repr=False,
        description='Image-store keys, JSON {"<id>": "<base64 of 32 bytes>"} (a Secret; '
        "required outside dev mode).",
    )
    store_key_id: str | None = Field(
        default=None, description="Id of the key new blobs are sealed with (one key: that one)."
    )
    store_key_file: Path | None = Field(
        default=None,
        description="Dev mode only: where a generated key is kept (default: store-keys.json "
        "beside store_dir).",
    )

    # Auth.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "irmi-gateway"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    password_min_length: int = 10
    # Login throttling: state in the database, shared by every replica. Failures are counted
    # per account and client address, per account, and per client address; from a counter's
    # free failures on, each failure doubles the wait (Retry-After), up to the caps.
    login_free_failures: int = Field(
        default=5, ge=1, description="Failed logins of one account from one client before backoff."
    )
    login_account_free_failures: int = Field(
        default=20,
        ge=1,
        description="Failed logins of one account, from any client, before backoff.",
    )
    login_client_free_failures: int = Field(
        default=50, ge=1, description="Failed logins from one client, any account, before backoff."
    )
    login_backoff_base_s: float = Field(
        default=1.0, gt=0, description="First backoff wait; it doubles with each further failure."
    )
    login_backoff_max_s: int = Field(
        default=15 * 60,
        ge=1,
        description="Longest wait imposed on one client (for one account, or for all of them).",
    )
    login_account_backoff_max_s: int = Field(
        default=60,
        ge=1,
        description="Longest wait imposed on an account from every client: an attacker "
        "elsewhere cannot keep its owner out for longer than this.",
    )
    login_failure_window_s: int = Field(
        default=15 * 60, ge=1, description="Failures older than this are forgotten."
    )

    # Password reset by a one-time link.
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Address users reach the web UI at (the password-reset links point there).",
    )
    password_reset_ttl_s: int = Field(
        default=30 * 60, ge=60, description="Lifetime of a password-reset token."
    )
    password_reset_interval_s: int = Field(
        default=60, ge=0, description="At most one reset e-mail per account this often."
    )
    reset_delivery: Literal["auto", "log", "smtp", "none"] = Field(
        default="auto",
        description="How reset links reach users: `smtp`; `log` (dev mode: the link is "
        "logged); `none`; `auto`: `smtp` when smtp_host is set, else `log` in dev mode, else none.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay for reset e-mails.")
    smtp_port: int = Field(default=587, description="SMTP relay port.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection to TLS.")
    smtp_username: str | None = Field(default=None, description="SMTP login (none: no login).")
    # Not a SecretStr: the base class would demand it even without SMTP.
    smtp_password: str | None = Field(
        default=None, repr=False, description="SMTP password (a Secret)."
    )
    smtp_from: str = Field(
        default="IRMI <no-reply@irmi.invalid>", description="Sender of reset e-mails."
    )
    smtp_timeout_s: float = Field(default=10.0, description="SMTP connect and command timeout.")

    # Records kept after a patient deletes a study (see gateway/README.md).
    record_retention_days: int = Field(
        default=3650,
        ge=1,
        description="Consultations of deleted studies, and audit rows, are kept this long; "
        "`python -m gateway.admin purge-records` removes older ones.",
    )

    # HTTP.
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8000", "http://127.0.0.1:8000"],
        description="Origins allowed to call the API from a browser.",
    )
    max_views: int = 4
    max_json_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest body of a route that does not take files (JSON); the upload "
        "routes take up to max_views x max_upload_bytes + 1 MiB. Larger: 413 before reading.",
    )
    hsts: bool = False  # turn on behind TLS
    api_key_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long an API key read from the database is trusted without asking it "
        "again: the most a change made elsewhere (a suspended owner, an edited row) takes to "
        "apply; a revocation through the API applies at once (PostgreSQL: NOTIFY to every "
        "replica). 0: no cache.",
    )
    site_point_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long the site operating point in force is trusted without reading "
        "it again (every new result is read at it): an adoption or rollback through the API "
        "applies at once on its replica, on the others within this. 0: read per result.",
    )
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
    exam_retry_window_s: float = Field(
        default=120.0,
        gt=0,
        description="How long after a mammography exam is lost (bc_service died, "
        "restarted, overloaded, 5xx) the gateway keeps waiting for bc_service to be ready "
        "again and re-submits it; past it the study ends failed. A 4xx fails at once.",
    )
    exam_attempts: int = Field(
        default=3,
        ge=1,
        description="Submissions of an exam that bc_service accepts and then loses, in all "
        "(bounds an exam that itself crashes the service). Time spent waiting for the "
        "service to come back does not use attempts.",
    )
    exam_retry_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="First wait between readiness checks of bc_service after an exam was "
        "lost; doubled after each failed check up to exam_retry_backoff_max_s.",
    )
    exam_retry_backoff_max_s: float = Field(
        default=5.0, gt=0, description="Longest wait between readiness checks of bc_service."
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
    # Site validation runs (gateway/validation): see README "Validate IRMI on your own films".
    validation_concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Images a replica's validation runs send to the inference services at "
        "once (their own cap, beside clinical traffic, which never waits on it).",
    )
    validation_retry_max_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait a validation run honours from an overloaded service's "
        "Retry-After before trying an image again.",
    )
    validation_max_zip_entries: int = Field(
        default=2000, ge=1, description="Most files one validation upload's zip may hold."
    )
    validation_max_unpacked_bytes: int = Field(
        default=256 * 1024**2,
        ge=1,
        description="Most bytes one validation upload's zip may unpack to (held in memory "
        "while the upload is read).",
    )
    validation_retention_days: int = Field(
        default=30,
        ge=1,
        description="Default days a validation run keeps its images (a run may ask fewer "
        "or more); its report and per-image scores stay until the run is deleted.",
    )
    validation_min_positives: int = Field(
        default=30,
        ge=1,
        description="A validation report warns when it rests on fewer positives than this.",
    )
    validation_sensitivity_floor: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="A validation report warns when a sensitivity's 95% CI lower bound is "
        "below this.",
    )
    validation_auc_floor: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="A validation report warns when the AUC's 95% CI lower bound is below this.",
    )
    validation_isotonic_min_positives: int = Field(
        default=100,
        ge=1,
        description="Fewest positives (and negatives) a run needs before isotonic "
        "recalibration is offered (Platt otherwise).",
    )

    @model_validator(mode="after")
    def _strong_jwt_secret(self) -> Settings:
        secret = self.jwt_secret.get_secret_value().encode() if self.jwt_secret else b""
        if not self.dev_mode and len(secret) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"IRMI_GATEWAY_JWT_SECRET is {len(secret)} bytes long; outside dev mode it must "
                f"be at least {MIN_JWT_SECRET_BYTES} bytes (a short secret is brute-forced from "
                "one token). Generate one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if self.reset_delivery == "log" and not self.dev_mode:
            raise ValueError(
                "IRMI_GATEWAY_RESET_DELIVERY=log writes reset links to the logs: dev mode only"
            )
        if self.reset_delivery == "smtp" and not self.smtp_host:
            raise ValueError("IRMI_GATEWAY_RESET_DELIVERY=smtp needs IRMI_GATEWAY_SMTP_HOST")
        if not self.dev_mode and not self.store_keys:
            # Refused here, before the database is migrated, with the one-line start-up message.
            raise ValueError(MISSING_STORE_KEY)
        return self

    @property
    def max_request_bytes(self) -> int:
        """Whole multipart body: up to ``max_views`` files plus form overhead."""
        return self.max_upload_bytes * self.max_views + 1024 * 1024


def load_or_exit(prog: str = "gateway") -> Settings:
    """The settings, or a clear one-line reason on stderr and exit status 2 (no traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        print(f"{prog}: refusing to start: {reasons}", file=sys.stderr)
        raise SystemExit(2) from None
