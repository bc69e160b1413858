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

    # Plain ALTER TABLE (SQLite >= 3.35 drops columns in place): a batch re-creation of
    # ``users`` would drop the table, and with foreign keys on, SQLite would cascade that drop
    # to every study and consultation.
    op.add_column("users", sa.Column("doctor_status", sa.String(length=16), nullable=True))
    op.create_index(op.f("ix_users_doctor_status"), "users", ["doctor_status"], unique=False)
    op.drop_column("users", "failed_logins")
    op.drop_column("users", "locked_until")
    op.execute("UPDATE users SET doctor_status = 'pending' WHERE role = 'doctor'")

    op.add_column("audit_events", sa.Column("subject_user_id", sa.String(length=32)))
    op.add_column("audit_events", sa.Column("details", sa.JSON(), nullable=True))
    op.create_index(
        op.f("ix_audit_events_subject_user_id"), "audit_events", ["subject_user_id"], unique=False
    )

    # Nothing references consultations, so re-creating that table (SQLite) cascades nowhere.
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

    op.drop_index(op.f("ix_audit_events_subject_user_id"), table_name="audit_events")
    op.drop_column("audit_events", "details")
    op.drop_column("audit_events", "subject_user_id")

    op.execute("DELETE FROM users WHERE role = 'admin'")
    op.add_column(
        "users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_index(op.f("ix_users_doctor_status"), table_name="users")
    op.drop_column("users", "doctor_status")

    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_resets_user_id"))
    op.drop_table("password_resets")
    op.drop_table("login_throttles")
