"""Real worker processes: crash recovery through lease expiry, and several workers sharing."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hookline.store.tables import deliveries, delivery_queue, webhook_logs
from tests.delivery import factories as f
from tests.receiver import Reply
from tests.support import LiveServer

LEASE = "2"


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hookline.cli.main", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_until_settled(rt: Any, expected: int, timeout: float = 60.0) -> None:
    """Poll another process's writes (no event crosses the process boundary)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with rt.db.read() as conn:
            pending = (
                await conn.execute(select(func.count()).select_from(delivery_queue))
            ).scalar_one()
            done = (
                await conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status == "delivered")
                )
            ).scalar_one()
        if pending == 0 and done >= expected:
            return
        assert loop.time() < deadline, f"{pending} still queued, {done} delivered"
        await asyncio.sleep(0.1)


async def test_killed_worker_delivery_is_sent_again_after_its_lease(
    runtime: Any, database: Any, receiver: Any, tmp_path: Path
) -> None:
    receiver.replies = [Reply(200, delay=5.0)]  # the first request hangs: the worker dies mid-way
    account = await f.make_account(runtime)
    hook = await f.make_webhook(runtime, account, receiver.url + "/crash", secret="k")
    emitted = await f.emit_event(runtime, account)
    env = database.env(HOOKLINE_DELIVERY_LEASE_SECONDS=LEASE)

    def launch() -> Any:
        if database.kind == "postgresql":
            return start_worker(env, tmp_path / "worker.log")
        return LiveServer(env).start()  # SQLite: `hookline serve` runs the worker

    first = launch()
    (hanging,) = await receiver.wait_for(1, timeout=30)
    process = first if isinstance(first, subprocess.Popen) else first.process
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    second = launch()
    try:
        requests = await receiver.wait_for(2, timeout=30)
        await wait_until_settled(runtime, 1)
    finally:
        stop_process(second) if isinstance(second, subprocess.Popen) else second.stop()
    retried = requests[1]
    assert (
        hanging.headers["webhook-id"]
        == retried.headers["webhook-id"]
        == str(emitted.delivery_ids[0])
    )
    assert retried.body == hanging.body == emitted.payload
    assert retried.at - hanging.at >= float(LEASE) - 0.5
    row = await f.delivery(runtime, emitted.delivery_ids[0])
    assert (row.status, row.attempts, row.last_http_status) == ("delivered", 2, 200)
    logs = await f.logs(runtime, hook)  # the killed attempt left no row; it still counts
    assert [(x.attempt, x.outcome) for x in logs] == [(2, "delivered")]


async def test_two_postgres_workers_share_a_backlog_without_double_sends(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    from hookline.bootstrap import prepare_database
    from hookline.runtime import Runtime
    from tests.conftest import Backend

    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    total = 400
    receiver.default = Reply(200, delay=0.005)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        account = await f.make_account(rt)
        hooks = [await f.make_webhook(rt, account, f"{receiver.url}/w{i}") for i in range(2)]
        await f.emit_many(rt, account, total // 2)
        env = database.env(HOOKLINE_DELIVERY_BATCH_SIZE="10", HOOKLINE_DELIVERY_CONCURRENCY="20")
        workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
        requests = await receiver.wait_for(total, timeout=60)
        await wait_until_settled(rt, total)
        sent = collections.Counter(r.headers["webhook-id"] for r in requests)
        assert len(sent) == total and set(sent.values()) == {1}
        async with rt.db.read() as conn:
            attempts = collections.Counter(
                (await conn.execute(select(deliveries.c.attempts, deliveries.c.status))).all()
            )
            logged = (await conn.execute(select(webhook_logs.c.delivery_id))).scalars().all()
        assert attempts == {(1, "delivered"): total}
        assert len(logged) == total and len(set(logged)) == total
        assert {uuid.UUID(x) for x in sent} == set(logged)
        assert len(hooks) == 2
    finally:
        for process in workers:
            stop_process(process)
        await rt.db.dispose()
        await database.drop()


async def test_postgres_worker_is_woken_by_notify_not_the_poll(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    from hookline.bootstrap import prepare_database
    from hookline.runtime import Runtime
    from tests.conftest import Backend

    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    worker = None
    try:
        account = await f.make_account(rt)
        await f.make_webhook(rt, account, receiver.url + "/notify")
        first = await f.emit_event(rt, account)
        worker = start_worker(
            database.env(HOOKLINE_DELIVERY_POLL_SECONDS="120"), tmp_path / "worker.log"
        )
        await receiver.wait_for(1, timeout=30)  # claimed at start-up: the worker is running
        await wait_until_settled(rt, 1)
        await asyncio.sleep(0.5)  # let it go idle on its 120 s poll (the behaviour tested)
        second = await f.emit_event(rt, account)
        requests = await receiver.wait_for(2, timeout=10)  # far sooner than the poll
        assert [r.headers["webhook-id"] for r in requests] == [
            str(first.delivery_ids[0]),
            str(second.delivery_ids[0]),
        ]
    finally:
        if worker is not None:
            stop_process(worker)
        await rt.db.dispose()
        await database.drop()


async def test_a_worker_process_serves_its_own_metrics_and_probes(
    postgres_backend: str, receiver: Any, tmp_path: Path
) -> None:
    """What a `hookline worker` sends shows in its own /metrics (the API's counters only
    count what the API process sent), beside the queue gauges read from the database."""
    import httpx

    from hookline.bootstrap import prepare_database
    from hookline.runtime import Runtime
    from tests.conftest import Backend
    from tests.support import free_port

    database = Backend(tmp_path, postgres_backend)
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    port = free_port()
    worker = start_worker(
        database.env(HOOKLINE_WORKER_METRICS_PORT=str(port)), tmp_path / "worker.log"
    )
    try:
        account = await f.make_account(rt)
        await f.make_webhook(rt, account, receiver.url + "/metrics-test")
        await f.emit_event(rt, account)
        await receiver.wait_for(1, timeout=30)
        await wait_until_settled(rt, expected=1)  # recorded, so counted
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics = (await http.get("/metrics")).text
            assert 'hookline_delivery_attempts_total{outcome="delivered"} 1.0' in metrics
            assert "hookline_delivery_queue_depth 0.0" in metrics
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).json() == {"status": "ok", "database": "postgresql"}
    finally:
        stop_process(worker)
        await rt.db.dispose()
        await database.drop()
