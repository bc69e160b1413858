"""site validation: validation runs, their labelled images, site operating points

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:22:24

Branch ``site`` (named 0003_site_validation.py; the coordinator chains the 0003 heads).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "site_points",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("point", sa.JSON(), nullable=False),
        sa.Column("choice", sa.JSON(), nullable=False),
        sa.Column("calibration", sa.JSON(), nullable=True),
        sa.Column("population", sa.JSON(), nullable=True),
        sa.Column("adopted_by", sa.String(length=32), nullable=True),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_by", sa.String(length=32), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_points")),
    )
    with op.batch_alter_table("site_points", schema=None) as batch_op:
        batch_op.create_index(
            "ix_site_points_model", ["modality", "model_name", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_site_points_run_id"), ["run_id"], unique=False)

    op.create_table(
        "validation_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("reference_standard", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_images_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("images_deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_runs")),
    )
    with op.batch_alter_table("validation_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_validation_runs_status"), ["status"], unique=False)

    op.create_table(
        "validation_items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("subgroups", sa.JSON(), nullable=False),
        sa.Column("blobs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("outside_population", sa.Boolean(), nullable=True),
        sa.Column("reliability", sa.JSON(), nullable=True),
        sa.Column("model", sa.JSON(), nullable=True),
        sa.Column("operating_point", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["validation_runs.id"],
            name=op.f("fk_validation_items_run_id_validation_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_items")),
    )
    with op.batch_alter_table("validation_items", schema=None) as batch_op:
        batch_op.create_index("ix_validation_items_run_status", ["run_id", "status"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("validation_items", schema=None) as batch_op:
        batch_op.drop_index("ix_validation_items_run_status")

    op.drop_table("validation_items")
    with op.batch_alter_table("validation_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_validation_runs_status"))

    op.drop_table("validation_runs")
    with op.batch_alter_table("site_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_site_points_run_id"))
        batch_op.drop_index("ix_site_points_model")

    op.drop_table("site_points")
