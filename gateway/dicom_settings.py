"""The gateway's settings of the DICOM integration (environment prefix ``IRMI_GATEWAY_``, mixed
into :class:`gateway.settings.Settings`): who received studies belong to and who reads them,
when a study is complete, and where results go back to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class DicomSettings(BaseSettings):
    dicom_account: str | None = Field(
        default=None,
        description="E-mail of the integration account (python -m gateway.admin "
        "create-integration) that studies received over DICOM belong to; only its API key may "
        "send them. Unset: DICOM intake (STOW-RS and the DICOM node) is refused.",
    )
    dicom_share_with: list[str] = Field(
        default_factory=list,
        description="E-mails of the doctors every received study is shared with (they read it "
        "while verified). Studies are never matched to patient accounts.",
    )
    dicom_quiet_s: float = Field(
        default=10.0,
        gt=0,
        description="A received study is complete (and analysed) after this long without a "
        "new instance.",
    )
    dicom_poll_s: float = Field(
        default=1.0, gt=0, description="How often the DICOM worker looks for work."
    )
    dicom_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A received study whose analysis has not recorded its IRMI study this long "
        "after it was claimed (its replica died) is claimed again.",
    )
    dicom_max_instances: int = Field(
        default=16, ge=1, description="Instances one STOW-RS request may carry."
    )
    dicom_dest: Literal["none", "dimse", "stow"] = Field(
        default="none",
        description="Where results (SR and overlay Secondary Capture) are sent: `dimse` "
        "(C-STORE to dicom_dest_host:dicom_dest_port), `stow` (STOW-RS to dicom_dest_url), "
        "or `none`.",
    )
    dicom_dest_host: str = Field(default="127.0.0.1", description="The PACS's DICOM host.")
    dicom_dest_port: int = Field(default=104, description="The PACS's DICOM port.")
    dicom_dest_ae_title: str = Field(default="PACS", description="The PACS's AE title.")
    dicom_ae_title: str = Field(
        default="IRMI", description="IRMI's own AE title when it sends results (C-STORE)."
    )
    dicom_dest_url: str | None = Field(
        default=None, description="STOW-RS base URL, e.g. http://pacs:8042/dicom-web."
    )
    dicom_dest_username: str | None = Field(
        default=None, description="HTTP basic-auth user for STOW-RS (none: no auth)."
    )
    # Not a SecretStr: the base class would demand it even without STOW-RS.
    dicom_dest_password: str | None = Field(
        default=None, repr=False, description="HTTP basic-auth password for STOW-RS (a Secret)."
    )
    dicom_timeout_s: float = Field(
        default=30.0, gt=0, description="Connect and response timeout of a result sent."
    )
    dicom_export_attempts: int = Field(
        default=10, ge=1, description="Sends of one result object before it is marked failed."
    )
    dicom_export_backoff_s: float = Field(
        default=2.0, ge=0, description="Wait after the first failed send; doubled each time."
    )
    dicom_export_backoff_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait between two sends of a result."
    )
