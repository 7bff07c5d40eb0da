"""The claim's plans beside one account's backlog (issue 18.1).

A claim takes each webhook's oldest due rows. When one webhook holds nearly the whole queue
and the table's statistics say so, the planner must still find another webhook's rows from
``(webhook_id, available_at)`` in a few steps, not by walking the queue in time order and
filtering out the backlog (what it did while an index on ``available_at`` alone existed:
22 ms claims beside 100,000 queued rows in bench.hostile). The worker runs the claim as a
prepared statement, so the test asks for the generic plan, as asyncpg's cache ends up with.
On SQLite every statement of the claim path must find its rows through an index.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from hookline.bootstrap import prepare_database
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store import queue_link
from hookline.store.event_sink import EventRow
from hookline.store.listen import plain_postgres_url
from hookline.store.queue import _NEXT_DUE
from hookline.store.queue_link import _CLAIM_POSTGRESQL
from tests.conftest import Backend
from tests.delivery.factories import EVENT, make_account, make_webhook

_WEBHOOK_TIME_INDEX = "ix_delivery_queue_webhook_id_available_at"
BACKLOG = 8000  # enough for the old plan to be chosen (3000 was not)


async def _queue(rt: Runtime, account: uuid.UUID, n: int) -> None:
    writer = rt.db.event_sink()
    await writer.open()
    try:
        rows = [
            EventRow(new_id(), account, EVENT, new_id(), None, b"{}", None, rt.clock.now(), False)
            for _ in range(n)
        ]
        await asyncio.gather(*(writer.accept(row) for row in rows))
    finally:
        await writer.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_a_claim_beside_a_backlog_does_not_walk_it(pg_runtime: Runtime) -> None:
    rt = pg_runtime
    big = await make_account(rt)
    backlogged = await make_webhook(rt, big, "http://127.0.0.1:9/backlog")
    await _queue(rt, big, BACKLOG)
    conn = await asyncpg.connect(
        plain_postgres_url(rt.db.url),
        server_settings={"search_path": rt.db.schema or "public", "jit": "off"},
    )
    try:
        await conn.execute("ANALYZE delivery_queue")  # the statistics see one webhook
        small = await make_account(rt)
        healthy = await make_webhook(rt, small, "http://127.0.0.1:9/healthy")
        await _queue(rt, small, 3)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(
            "PREPARE claim(timestamptz, int, timestamptz, text, int, uuid[], int[]) AS "
            + _CLAIM_POSTGRESQL
        )
        now = rt.clock.now() + timedelta(seconds=1)
        transaction = conn.transaction()
        await transaction.start()  # EXPLAIN ANALYZE runs the update: rolled back after
        try:
            text = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim('{now.isoformat()}', 100, "
                f"'{(now + timedelta(seconds=60)).isoformat()}', 'test', 100, "
                f"ARRAY['{backlogged}', '{healthy}']::uuid[], "
                "ARRAY[0, 10])"  # the backlogged webhook's destination is full
            )
        finally:
            await transaction.rollback()
        plan = json.loads(text)[0]["Plan"]
    finally:
        await conn.close()
    nodes = list(_nodes(plan))
    filtered_out = sum(node.get("Rows Removed by Filter", 0) for node in nodes)
    claimed = next(n for n in nodes if n["Node Type"] == "ModifyTable")["Actual Rows"]
    assert claimed == 3  # the healthy webhook's rows, none of the backlog's
    assert filtered_out < 100, filtered_out  # not the backlog, row by row


def _sqlite_statements() -> dict[str, tuple[str, tuple[Any, ...]]]:
    hook, now = "0" * 32, "2030-01-01 00:00:00.000000"
    return {
        "hooks": (queue_link._HOOKS_SQLITE, ()),
        "due": (queue_link._DUE_SQLITE, (hook, now, 10)),
        "due count": (queue_link._DUE_COUNT_SQLITE, (hook, now, 10)),
        "lease": (queue_link._LEASE_SQLITE, (hook, now, 10, now, "w")),
        "lease one": (queue_link._LEASE_ONE_SQLITE, (now, "w", hook)),
        "claimed": (queue_link._CLAIMED_SQLITE, (f'["{hook}"]', now, "w")),
        "next due": (str(_NEXT_DUE.element), ()),
    }


@pytest.mark.parametrize("name", list(_sqlite_statements()))
async def test_sqlite_queue_statements_never_scan_the_queue(tmp_path: Path, name: str) -> None:
    """Each claim-path statement finds its rows through an index: a backlog is never read
    row by row (the claimed rows' lookup did, for a while, after migration 0011)."""
    rt = Runtime.create(Backend(tmp_path, "sqlite").settings())
    await prepare_database(rt)
    await rt.db.dispose()
    statement, params = _sqlite_statements()[name]
    db = sqlite3.connect(make_url(rt.db.url).database or "")
    try:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement, params)]
    finally:
        db.close()
    # The one scan allowed: the webhook walk's first probe (``LIMIT 1`` on the index).
    first_probe = "SCAN delivery_queue USING COVERING INDEX " + _WEBHOOK_TIME_INDEX
    scans = [
        step
        for step in plan
        if re.match(r"SCAN (delivery_queue|[a-z])\b", step) and step != first_probe
    ]
    assert plan and not scans, plan
