"""accounts: admin role and doctor verification, login throttles, password resets,
consultations that outlive their study, audit rows about accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:40:00

Existing doctors become ``pending``: until an admin verifies them they are not listed to
patients, cannot receive studies, and their existing shares are suspended (a doctor reads a
shared study only while verified). The per-account lockout columns give way to the
``login_throttles`` table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    op.create_table(
        "password_resets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_password_resets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_resets_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("doctor_status", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_users_doctor_status"), ["doctor_status"], unique=False)
        batch_op.drop_column("failed_logins")
        batch_op.drop_column("locked_until")
    op.execute("UPDATE users SET doctor_status = 'pending' WHERE role = 'doctor'")

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_user_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_audit_events_subject_user_id"), ["subject_user_id"], unique=False
        )

    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("study_deleted_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("access_revoked_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE consultations SET study_kind = "
        "(SELECT kind FROM studies WHERE studies.id = consultations.study_id)"
    )
    op.execute("UPDATE consultations SET study_kind = 'chest' WHERE study_kind IS NULL")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.alter_column("study_kind", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_constraint("fk_consultations_study_id_studies", type_="foreignkey")


def downgrade() -> None:
    # Consultations of deleted studies cannot point at their study again: they go.
    op.execute("DELETE FROM consultations WHERE study_id NOT IN (SELECT id FROM studies)")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_consultations_study_id_studies",
            "studies",
            ["study_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.drop_column("access_revoked_at")
        batch_op.drop_column("study_deleted_at")
        batch_op.drop_column("study_kind")

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_subject_user_id"))
        batch_op.drop_column("details")
        batch_op.drop_column("subject_user_id")

    op.execute("DELETE FROM users WHERE role = 'admin'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index(batch_op.f("ix_users_doctor_status"))
        batch_op.drop_column("doctor_status")

    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_resets_user_id"))
    op.drop_table("password_resets")
    op.drop_table("login_throttles")
