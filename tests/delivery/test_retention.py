"""Retention: expired rows go in batches; pending and retrying work never does, on both backends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text

from hookline.clock import FrozenClock
from hookline.delivery.retention import purge, run_retention
from hookline.store import retention as store
from hookline.store.retention import Kind
from hookline.store.tables import deliveries, delivery_queue, events, webhook_logs
from tests.delivery import factories as f
from tests.delivery.conftest import running_worker
from tests.support import Ticks

FUTURE = timedelta(hours=1)


class GatedReceiver:
    """``/held`` requests wait until the test releases them; ``/fail`` answers 500; the rest
    200. ``held`` is set once a request is being held."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.held = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/held":
            self.held.set()
            await self.gate.wait()
        if request.path == "/fail":
            return web.Response(status=500, text="boom")
        return web.Response(text="ok")

    async def start(self) -> GatedReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.gate.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def gated() -> AsyncIterator[GatedReceiver]:
    receiver = await GatedReceiver().start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def _ids(rt, table) -> set[uuid.UUID]:  # type: ignore[no-untyped-def]
    async with rt.db.read() as conn:
        return set((await conn.execute(select(table.c.id))).scalars())


async def _count(rt, table) -> int:  # type: ignore[no-untyped-def]
    async with rt.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _delivered(rt, receiver, account, n: int) -> list:  # type: ignore[no-untyped-def]
    """``n`` events to one webhook, each delivered and recorded."""
    await f.make_webhook(rt, account, receiver.url + "/ok")
    emitted = [await f.emit_event(rt, account) for _ in range(n)]
    async with running_worker(rt) as worker:
        await worker.wait_recorded(n)
    return emitted


async def test_expired_rows_are_removed_in_batches_and_younger_ones_stay(
    make_runtime, receiver
) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    old = await _delivered(rt, receiver, account, 5)
    await asyncio.sleep(0.005)  # ids carry milliseconds: the cut-off lies strictly between
    cutoff = rt.clock.now()
    await asyncio.sleep(0.005)
    young = await f.emit_event(rt, account)

    report = await purge(rt.db, before=cutoff, batch_size=2)

    assert report.removed == {Kind.ATTEMPTS: 5, Kind.DELIVERIES: 5, Kind.EVENTS: 5}
    assert report.batches == 3 * 3  # 5 rows of each table, at most 2 per transaction
    assert await _ids(rt, events) == {young.id}
    assert await _ids(rt, deliveries) == set(young.delivery_ids)
    assert await _count(rt, webhook_logs) == 0
    assert not {e.id for e in old} & await _ids(rt, events)


async def test_pending_and_retrying_work_survives_a_purge_while_the_worker_sends_it(
    make_runtime, gated
) -> None:
    rt = await make_runtime(retry_schedule=[0, 3600])  # a failed first try waits an hour
    done_account, busy_account = await f.make_account(rt), await f.make_account(rt)
    await f.make_webhook(rt, done_account, gated.url + "/ok")
    held_hook = await f.make_webhook(rt, busy_account, gated.url + "/held")
    retry_hook = await f.make_webhook(rt, busy_account, gated.url + "/fail")
    ok_hook = await f.make_webhook(rt, busy_account, gated.url + "/ok2")
    done = await f.emit_event(rt, done_account)
    busy = await f.emit_event(rt, busy_account)  # one delivery to each of the three hooks
    async with running_worker(rt) as worker:
        await asyncio.wait_for(gated.held.wait(), timeout=15)
        await worker.wait_recorded(3)  # /ok, /ok2 delivered; /fail scheduled for a retry
        by_hook = await _deliveries_by_hook(rt, busy.id)
        held_id, retry_id = by_hook[held_hook], by_hook[retry_hook]
        assert (await f.delivery(rt, held_id)).status == "pending"
        assert (await f.delivery(rt, retry_id)).status == "pending"

        counted = await purge(rt.db, before=rt.clock.now() + FUTURE, dry_run=True)
        report = await purge(rt.db, before=rt.clock.now() + FUTURE, batch_size=1)

        # What was finished went: the first event whole, the /ok2 delivery and its log.
        expected = {Kind.EVENTS: 1, Kind.DELIVERIES: 2, Kind.ATTEMPTS: 2}
        assert counted.removed == expected and report.removed == expected
        assert await _ids(rt, events) == {busy.id}
        assert await _ids(rt, deliveries) == {held_id, retry_id}
        assert {row.delivery_id for row in await f.queued(rt)} == {held_id, retry_id}
        assert [log.outcome for log in await f.logs(rt, retry_hook)] == ["retry"]
        assert await f.logs(rt, ok_hook) == []
        assert done.id not in await _ids(rt, events)

        gated.gate.set()  # the held request completes and is recorded as delivered
        await worker.wait_recorded(4)
    assert (await f.delivery(rt, held_id)).status == "delivered"
    report = await purge(rt.db, before=rt.clock.now() + FUTURE)
    assert report.removed == {Kind.ATTEMPTS: 1, Kind.DELIVERIES: 1, Kind.EVENTS: 0}
    assert await _ids(rt, deliveries) == {retry_id}  # still retrying: it and its event stay
    assert await _ids(rt, events) == {busy.id}


async def _deliveries_by_hook(rt, event_id) -> dict:  # type: ignore[no-untyped-def]
    async with rt.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.webhook_id, deliveries.c.id).where(
                deliveries.c.event_id == event_id
            )
        )
        return {row.webhook_id: row.id for row in rows}


async def test_the_service_purges_on_its_interval_and_counts_in_metrics(
    make_runtime, receiver
) -> None:
    clock = FrozenClock()
    rt = await make_runtime(clock, retention_seconds=60, retention_interval_seconds=3600)
    account = await f.make_account(rt)
    await _delivered(rt, receiver, account, 3)
    before = _purged_events()
    clock.advance(120)  # the rows are now two minutes old: past a one-minute retention
    ticks, stop = Ticks(), asyncio.Event()
    service = asyncio.create_task(run_retention(rt, stop, ticked=ticks))
    try:
        await ticks.next()
    finally:
        stop.set()
        await service
    assert await _count(rt, events) == 0
    assert await _count(rt, deliveries) == 0
    assert _purged_events() - before == 3


def _purged_events() -> float:
    value = REGISTRY.get_sample_value("hookline_retention_purged_rows_total", {"table": "events"})
    assert value is not None
    return value


async def test_zero_days_keeps_everything(make_runtime, receiver) -> None:
    clock = FrozenClock()
    rt = await make_runtime(clock, retention_days=0)
    account = await f.make_account(rt)
    await _delivered(rt, receiver, account, 1)
    clock.advance(10 * 365 * 86400)
    ticks, stop = Ticks(), asyncio.Event()
    service = asyncio.create_task(run_retention(rt, stop, ticked=ticks))
    await ticks.next()
    stop.set()
    await service
    assert await _count(rt, events) == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgresql_runs_one_purge_at_a_time(make_runtime) -> None:
    rt = await make_runtime()
    async with rt.db.engine.connect() as other:  # another process's pass, holding the lock
        assert await store.try_purge_lock(other, rt.db.schema)
        report = await purge(rt.db, before=rt.clock.now())
        assert report.skipped
        await store.release_purge_lock(other, rt.db.schema)
    assert not (await purge(rt.db, before=rt.clock.now())).skipped


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgresql_queue_table_has_its_autovacuum_settings(make_runtime) -> None:
    rt = await make_runtime()
    async with rt.db.read() as conn:
        options = (
            await conn.execute(
                text("SELECT reloptions FROM pg_class WHERE oid = 'delivery_queue'::regclass")
            )
        ).scalar_one()
    assert "autovacuum_vacuum_cost_delay=0" in options
    assert "autovacuum_vacuum_scale_factor=0" in options


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_gives_purged_space_back(make_runtime) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    for _ in range(300):  # no webhook: events only
        await f.emit_event(rt, account)
    async with rt.db.read() as conn:
        pages_before = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
        assert (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar_one() == 2
    report = await purge(rt.db, before=rt.clock.now() + FUTURE)
    assert report.removed[Kind.EVENTS] == 300
    async with rt.db.read() as conn:
        free, _ = await store.sqlite_free_pages(conn)
        pages_after = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
    assert report.freed_pages > 0
    assert free == 0
    assert pages_after == pages_before - report.freed_pages


def _purge_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli.main", "purge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_purge_and_dry_run(make_runtime, receiver, database) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    await _delivered(rt, receiver, account, 2)
    before = (rt.clock.now() + FUTURE).isoformat()
    env = database.env()

    counted = await asyncio.to_thread(_purge_cli, env, "--before", before, "--dry-run", "--json")
    assert counted.returncode == 0, counted.stderr
    body = json.loads(counted.stdout)
    assert (body["events"], body["deliveries"], body["attempts"], body["dryRun"]) == (
        2,
        2,
        2,
        True,
    )
    assert await _count(rt, events) == 2  # a dry run removes nothing

    done = await asyncio.to_thread(_purge_cli, env, "--before", before)
    assert done.returncode == 0, done.stderr
    assert "removed 2 events, 2 deliveries and 2 attempt logs" in done.stdout
    assert await _count(rt, events) == await _count(rt, deliveries) == 0
    assert await _count(rt, delivery_queue) == await _count(rt, webhook_logs) == 0

    wrong = await asyncio.to_thread(_purge_cli, env, "--before", "last tuesday")
    assert wrong.returncode == 2
    assert "is not a date" in wrong.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cli_vacuum_converts_an_older_sqlite_file(database) -> None:
    import sqlite3

    path = database.settings().data_dir / "hookline.db"
    path.parent.mkdir(parents=True)
    older = sqlite3.connect(path)  # a file whose first table came before auto_vacuum was set
    older.execute("CREATE TABLE made_by_an_older_hookline (x)")
    older.close()
    env = database.env()
    done = await asyncio.to_thread(_purge_cli, env, "--vacuum")
    assert done.returncode == 0, done.stderr
    assert "now gives space back" in done.stdout
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    finally:
        check.close()


async def test_an_idempotency_key_is_remembered_as_long_as_its_event(api) -> None:
    from tests.delivery_api.helpers import connection_event, runtime_of

    rt = runtime_of(api)
    headers = {"x-chift-client-requestid": "req-kept"}
    first = await api.post("/events", json=connection_event(), headers=headers)
    replay = await api.post("/events", json=connection_event(), headers=headers)
    assert replay.headers["x-idempotent-replayed"] == "true"
    assert replay.json()["eventid"] == first.json()["eventid"]

    report = await purge(rt.db, before=rt.clock.now() + FUTURE)
    assert report.removed[Kind.EVENTS] == 1

    again = await api.post("/events", json=connection_event(), headers=headers)
    assert again.status_code == 202
    assert "x-idempotent-replayed" not in again.headers
    assert again.json()["eventid"] != first.json()["eventid"]
