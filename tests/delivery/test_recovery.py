"""Recovery in seconds, not after the lease (issue 18.5).

SQLite: a starting process releases every lease at once (one process per file). PostgreSQL:
workers keep a heartbeat, and any worker releases a dead worker's claims once its heartbeat
is ``delivery_takeover_seconds`` old, never a live worker's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from hookline.store.queue_link import open_queue_link
from hookline.store.tables import delivery_queue, delivery_workers
from tests.delivery import factories as f
from tests.delivery.conftest import running_worker
from tests.delivery.factories import emit_many
from tests.delivery.test_processes import start_worker, stop_process, wait_until_settled
from tests.receiver import Reply
from tests.support import LiveServer, free_port

LEASE = timedelta(seconds=60)


async def claim_as(rt: Any, owner: str) -> None:
    """Claim everything due as ``owner`` would have before dying (the lease runs 60 s)."""
    link = open_queue_link(rt.db)
    try:
        now = rt.clock.now()
        claimed = await link.claim(owner=owner, now=now, lease_until=now + LEASE, limit=100)
        assert claimed
    finally:
        await link.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_starting_sqlite_worker_releases_every_lease_at_once(
    make_runtime: Any, receiver: Any
) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/restart")
    emitted = await f.emit_event(rt, account)
    await claim_as(rt, "crashed:1")
    async with running_worker(rt) as worker:
        (got,) = await receiver.wait_for(1)  # far sooner than the 60 s lease
        await worker.wait_recorded(1)
    assert got.headers["webhook-id"] == str(emitted.delivery_ids[0])
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts) == ("delivered", 2)  # the lost attempt still counts


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_postgres_worker_takes_over_a_dead_workers_claims(
    make_runtime: Any, postgres_backend: str, receiver: Any
) -> None:
    rt = await make_runtime(delivery_takeover_seconds=1.0)
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/takeover")
    emitted = await f.emit_event(rt, account)
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(delivery_workers).values(
                owner="dead:1", heartbeat_at=rt.clock.now() - timedelta(seconds=5)
            )
        )
    await claim_as(rt, "dead:1")
    async with running_worker(rt) as worker:
        (got,) = await receiver.wait_for(1)
        await worker.wait_recorded(1)
    assert got.headers["webhook-id"] == str(emitted.delivery_ids[0])
    async with rt.db.read() as conn:
        owners = (await conn.execute(select(delivery_workers.c.owner))).scalars().all()
    assert "dead:1" not in owners


async def test_a_live_workers_claims_are_never_taken_over(make_runtime: Any, receiver: Any) -> None:
    """The request outlasts the takeover period several times: the sending worker's heartbeat
    keeps its claim, so the other worker (tending all along) never sends it again."""
    rt = await make_runtime(delivery_takeover_seconds=0.5, delivery_timeout=10.0)
    receiver.default = Reply(200, delay=2.5)
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/long")
    await f.emit_event(rt, account)
    async with running_worker(rt) as sending:
        await receiver.wait_for(1)
        async with running_worker(rt) as other:
            await sending.wait_recorded(1, timeout=15)
            assert other.recorded_count == 0
    assert len(receiver.requests) == 1
    (log,) = await f.logs(rt, hook)
    assert (log.outcome, log.attempt) == ("delivered", 1)


async def test_restart_after_sigkill_drains_long_before_the_lease(
    runtime: Any, database: Any, receiver: Any, tmp_path: Path
) -> None:
    """SIGKILL mid-drain with the default 60 s lease; the restarted process drains the rest.
    Counted from the moment the new process is up (starting Python on a busy 2-core machine
    took 15 s here); the bound (30 s) is generous on purpose: the claims come back within
    ~10 s of the death on PostgreSQL (the takeover period) and at start-up on SQLite."""
    total = 40
    receiver.default = Reply(200, delay=0.2)
    account = await f.make_account(runtime)
    await f.make_webhook(runtime, account, receiver.url + "/drain")
    await emit_many(runtime, account, total)
    env = database.env()
    assert "HOOKLINE_DELIVERY_LEASE_SECONDS" not in env  # the default 60 s lease

    async def launch() -> Any:
        if database.kind == "sqlite":
            return LiveServer(env).start()  # `hookline serve` runs the worker; up when healthy
        port = free_port()
        worker = start_worker(
            {**env, "HOOKLINE_WORKER_METRICS_PORT": str(port)}, tmp_path / "worker.log"
        )
        await wait_healthy(f"http://127.0.0.1:{port}/healthz", worker)
        return worker

    first = await launch()
    await receiver.wait_for(5, timeout=30)  # mid-drain: requests in flight, more claimed
    process = first if isinstance(first, subprocess.Popen) else first.process
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed = time.monotonic()
    async with runtime.db.read() as conn:
        stranded = (
            await conn.execute(
                select(delivery_queue.c.delivery_id).where(
                    delivery_queue.c.lease_owner.is_not(None)
                )
            )
        ).all()
    assert stranded  # the dead process left claims behind, leased for 60 s
    second = await launch()
    up = time.monotonic()
    try:
        await wait_until_settled(runtime, total, timeout=30.0)
    finally:
        stop_process(second) if isinstance(second, subprocess.Popen) else second.stop()
    done = time.monotonic()
    print(  # shown with -s
        f"[{database.kind}] restarted process up {up - killed:.1f} s after the kill, "
        f"drained {done - up:.1f} s later"
    )
    sent = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(sent) == total  # every delivery arrived (some twice: at-least-once)


async def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll another process's readiness (no event crosses the process boundary)."""
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            assert process.poll() is None, "the worker exited"
            try:
                if (await http.get(url, timeout=0.5)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert loop.time() < deadline, "the worker did not come up"
            await asyncio.sleep(0.1)
