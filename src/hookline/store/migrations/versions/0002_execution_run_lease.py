"""executions.run_lease_until: runs carried out in a process are resumed after it dies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:58:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hookline.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "run_lease_until", hookline.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            "ix_executions_status_run_lease", ["status", "run_lease_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_status_run_lease")
        batch_op.drop_column("run_lease_until")
