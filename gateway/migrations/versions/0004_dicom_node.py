"""dicom: studies received over DICOM (C-STORE via the DICOM node, STOW-RS), their instances,
and the results (SR, Secondary Capture) sent back to the PACS with their delivery record

Revision ID: 0003_dicom
Revises: 0003
Create Date: 2026-12-01 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_dicom"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_studies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("open_uid", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("study_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.JSON(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["users.id"],
            name=op.f("fk_dicom_studies_account_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_studies")),
        sa.UniqueConstraint("open_uid", name=op.f("uq_dicom_studies_open_uid")),
    )
    op.create_index(
        op.f("ix_dicom_studies_account_id"), "dicom_studies", ["account_id"], unique=False
    )
    op.create_index(op.f("ix_dicom_studies_status"), "dicom_studies", ["status"], unique=False)
    op.create_index(op.f("ix_dicom_studies_study_id"), "dicom_studies", ["study_id"], unique=False)
    op.create_index(
        op.f("ix_dicom_studies_study_uid"), "dicom_studies", ["study_uid"], unique=False
    )
    op.create_table(
        "dicom_exports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dicom_study_id", sa.String(length=32), nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dicom_study_id"],
            ["dicom_studies.id"],
            name=op.f("fk_dicom_exports_dicom_study_id_dicom_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_exports")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_dicom_exports_sop_instance_uid")),
    )
    op.create_index(
        op.f("ix_dicom_exports_dicom_study_id"), "dicom_exports", ["dicom_study_id"], unique=False
    )
    op.create_index(
        op.f("ix_dicom_exports_next_attempt_at"), "dicom_exports", ["next_attempt_at"], unique=False
    )
    op.create_index(op.f("ix_dicom_exports_status"), "dicom_exports", ["status"], unique=False)
    op.create_index(op.f("ix_dicom_exports_study_id"), "dicom_exports", ["study_id"], unique=False)
    op.create_table(
        "dicom_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dicom_study_id", sa.String(length=32), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dicom_study_id"],
            ["dicom_studies.id"],
            name=op.f("fk_dicom_instances_dicom_study_id_dicom_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_instances")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_dicom_instances_sop_instance_uid")),
    )
    op.create_index(
        op.f("ix_dicom_instances_dicom_study_id"),
        "dicom_instances",
        ["dicom_study_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dicom_instances_dicom_study_id"), table_name="dicom_instances")
    op.drop_table("dicom_instances")
    op.drop_index(op.f("ix_dicom_exports_study_id"), table_name="dicom_exports")
    op.drop_index(op.f("ix_dicom_exports_status"), table_name="dicom_exports")
    op.drop_index(op.f("ix_dicom_exports_next_attempt_at"), table_name="dicom_exports")
    op.drop_index(op.f("ix_dicom_exports_dicom_study_id"), table_name="dicom_exports")
    op.drop_table("dicom_exports")
    op.drop_index(op.f("ix_dicom_studies_study_uid"), table_name="dicom_studies")
    op.drop_index(op.f("ix_dicom_studies_study_id"), table_name="dicom_studies")
    op.drop_index(op.f("ix_dicom_studies_status"), table_name="dicom_studies")
    op.drop_index(op.f("ix_dicom_studies_account_id"), table_name="dicom_studies")
    op.drop_table("dicom_studies")
