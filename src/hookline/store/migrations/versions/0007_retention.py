"""retention: per-table autovacuum settings for the churning and the purged tables

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:00:00

PostgreSQL only (SQLite's counterpart, auto_vacuum=INCREMENTAL, is set when a file is made;
see ``hookline.store.db``). ``delivery_queue`` gets one insert and one delete per delivery:
it is vacuumed after a fixed number of dead rows (not a fraction of a table whose size swings
between zero and a backlog) and without cost delay, so a vacuum keeps up with the worker;
its statistics are refreshed as often, since the claim's plan depends on its size. The tables
retention deletes from are vacuumed at 2 % dead rows instead of 20 %, so purged space is
reused within hours rather than after days of growth.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

QUEUE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_cost_delay": "0",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "10000",
}
PURGED = {"autovacuum_vacuum_scale_factor": "0.02", "autovacuum_analyze_scale_factor": "0.02"}
TABLES = {"delivery_queue": QUEUE, "events": PURGED, "deliveries": PURGED, "webhook_logs": PURGED}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, options in TABLES.items():
        values = ", ".join(f"{name} = {value}" for name, value in options.items())
        op.execute(f"ALTER TABLE {table} SET ({values})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, options in TABLES.items():
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(options)})")
