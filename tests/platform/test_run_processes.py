"""Flow runs across real processes (PostgreSQL): a run outlasting its lease is not taken over
while its process lives, and is sent again, with the same execution id, once it is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from hookline.bootstrap import prepare_database
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import executions
from tests.conftest import Backend
from tests.delivery.test_processes import start_worker, stop_process
from tests.platform.syncs_support import enable, flow_body, new_consumer, new_sync
from tests.receiver import Reply
from tests.support import ApiClient, LiveServer

SUCCESS = b'{"status":"success"}'


async def _status(rt: Runtime, execution_id: str) -> str:
    async with rt.db.read() as conn:
        return (
            await conn.execute(
                select(executions.c.status).where(executions.c.id == uuid.UUID(execution_id))
            )
        ).scalar_one()


async def _wait_for_status(
    rt: Runtime, execution_id: str, wanted: str, timeout: float = 30.0
) -> None:
    """Poll another process's writes (no event crosses the process boundary)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (status := await _status(rt, execution_id)) != wanted:
        assert loop.time() < deadline, f"execution still {status}"
        await asyncio.sleep(0.1)


async def test_a_run_is_resumed_only_when_its_process_dies(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    database = Backend(tmp_path, postgres_backend)
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "runs", now=rt.clock.now())
    env = database.env(HOOKLINE_RUN_LEASE_SECONDS="1", HOOKLINE_SCHEDULER_INTERVAL_SECONDS="0.2")
    server = LiveServer(env).start()
    worker = start_worker(env, tmp_path / "worker.log")  # its scheduler watches the leases
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = ApiClient(http, key)
            await api.login()
            execution = {"type": "code", "data": None, "url": f"{receiver.url}/run"}
            sync = await new_sync(api, flow_body(execution=execution))
            sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
            consumer = await new_consumer(api)
            assert (await enable(api, consumer, sync_id, flow_id)).status_code == 200

            async def trigger() -> str:
                answer = await api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
                assert answer.status_code == 200, answer.text
                return answer.json()["data"]["executions"][0]["executionid"]

            # 1. A run three times as long as its lease, its process alive: renewed, not resumed.
            receiver.replies = [Reply(200, SUCCESS, delay=3.0)]
            slow = await trigger()
            await _wait_for_status(rt, slow, "success")
            assert [r.headers["X-Hookline-Execution-Id"] for r in receiver.requests] == [slow]

            # 2. Its process killed mid-request: the worker sends the run again.
            receiver.replies = [Reply(200, SUCCESS, delay=5.0)]  # outlives the lease
            receiver.default = Reply(200, SUCCESS)
            killed = await trigger()
            hanging = (await receiver.wait_for(2, timeout=30))[1]
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
            resumed = (await receiver.wait_for(3, timeout=30))[2]
            await _wait_for_status(rt, killed, "success")
        assert hanging.headers["X-Hookline-Execution-Id"] == killed
        assert resumed.headers["X-Hookline-Execution-Id"] == killed
        assert resumed.body == hanging.body
        assert resumed.at - hanging.at >= 0.5  # not before the lease ran out
    finally:
        stop_process(worker)
        server.stop()
        await rt.db.dispose()
        await database.drop()
