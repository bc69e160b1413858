"""Settings of the DICOM node (environment prefix ``IRMI_DICOM_``)."""

from __future__ import annotations

import sys

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IRMI_DICOM_", extra="ignore")

    port: int = Field(default=8003, description="HTTP port of the node's health and metrics.")
    dicom_host: str = Field(default="0.0.0.0", description="Address the DICOM listener binds.")  # noqa: S104
    dicom_port: int = Field(default=11112, ge=1, le=65535, description="DICOM (DIMSE) port.")
    ae_title: str = Field(
        default="IRMI", min_length=1, max_length=16, description="The node's own AE title."
    )
    allowed_ae_titles: list[str] = Field(
        default_factory=list,
        description="Calling AE titles allowed to associate (empty: any, dev mode only).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="IP addresses allowed to connect (empty: any; the NetworkPolicy narrows "
        "who reaches the node in Kubernetes).",
    )
    gateway_url: str = Field(
        default="http://127.0.0.1:8000", description="The gateway the node posts instances to."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The integration account's API key (python -m gateway.admin "
        "create-integration); a Secret. The node is ready only while the gateway accepts it.",
    )
    gateway_timeout_s: float = Field(
        default=60.0, gt=0, description="How long one instance may take the gateway to store."
    )
    max_associations: int = Field(
        default=10, ge=1, description="Associations the node serves at once."
    )
    dimse_timeout_s: float = Field(
        default=60.0, gt=0, description="DIMSE and network timeout of an association."
    )

    @model_validator(mode="after")
    def _configured(self) -> Settings:
        if not self.dev_mode and not self.allowed_ae_titles:
            raise ValueError(
                "IRMI_DICOM_ALLOWED_AE_TITLES must name the calling AE titles of your "
                'modalities/PACS, e.g. ["ORTHANC"] (any caller is accepted in dev mode only)'
            )
        return self


def load_or_exit(prog: str = "dicom_node") -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        print(f"{prog}: refusing to start: {reasons}", file=sys.stderr)
        raise SystemExit(2) from None
