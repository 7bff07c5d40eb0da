"""webhooks: signature scheme, public key, rotation overlap end, payload filter

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hookline.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_doc = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "signature_scheme",
                sa.String(length=16),
                server_default=sa.text("'hmac'"),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("public_key", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "previous_secret_until",
                hookline.store.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("payload_filter", json_doc, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_column("payload_filter")
        batch_op.drop_column("previous_secret_until")
        batch_op.drop_column("public_key")
        batch_op.drop_column("signature_scheme")
