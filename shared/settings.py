"""Settings base shared by the services (pydantic-settings; one env prefix per service)."""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """Real-data folder: ``IRMI_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("IRMI_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``model_config`` with their own env prefix.

    Secret fields are declared as ``SecretStr | None = None``: outside dev mode a missing
    secret stops the service at start-up; in dev mode a random one is generated per process.
    """

    model_config = SettingsConfigDict(env_prefix="IRMI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    dev_mode: bool = Field(
        default_factory=lambda: os.environ.get("IRMI_DEV_MODE", "").lower() in {"1", "true", "yes"},
        description="Explicit development mode: generates missing secrets. Never in production.",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    max_upload_bytes: int = 50 * 1024 * 1024
    max_upload_bytes_in_flight: int = Field(
        default=512 * 1024 * 1024,
        ge=1,
        description="Upload bytes that all requests of the process together may hold in "
        "memory while shared.uploads reads them; past it, 503 overloaded with Retry-After.",
    )
    max_image_pixels: int = 60_000_000
    max_image_side: int = 12_000
    onnx_intra_op_threads: int = 0  # 0 lets ONNX Runtime decide (all cores)
    onnx_inter_op_threads: int = 1
    onnx_allow_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's idle threads busy-wait for the next run (its own "
        "default). Off: they sleep, which costs nothing between requests.",
    )
    use_gpu: bool = True  # take CUDAExecutionProvider when it is really available
    cpu_workers: int = 2  # threads for CPU-heavy work kept off the event loop
    http_keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description="An idle keep-alive connection is closed after this long (seconds). "
        "Clients pooling connections (the gateway) must expire theirs sooner.",
    )
    http_parser: Literal["httptools", "h11"] = Field(
        default="httptools",
        description="uvicorn's HTTP/1.1 implementation: httptools (llhttp, in C) or h11 "
        "(pure Python, more CPU per request).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop: uvloop (libuv) or the standard library's asyncio.",
    )

    @model_validator(mode="after")
    def _require_secrets(self) -> ServiceSettings:
        for name, field in type(self).model_fields.items():
            annotation = str(field.annotation)
            if "SecretStr" not in annotation:
                continue
            if getattr(self, name) is not None:
                continue
            if self.dev_mode:
                warnings.warn(
                    f"{name} not set: generated a random one (dev mode only)", stacklevel=2
                )
                object.__setattr__(self, name, SecretStr(secrets.token_urlsafe(48)))
            else:
                prefix = self.model_config.get("env_prefix", "")
                raise ValueError(
                    f"secret {prefix}{name.upper()} must be set (or run with IRMI_DEV_MODE=1)"
                )
        return self

    def limits(self) -> Any:
        from shared.imaging import ImageLimits

        return ImageLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_image_pixels,
            max_side=self.max_image_side,
        )
