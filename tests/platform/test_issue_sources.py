"""Issues raised and closed by the platform's own transitions: executions, connection status
and local agents (the hooks in executions.py, connections.py and agents.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hookline.clock import FrozenClock
from hookline.platform import agents, connections, consumers, executions, issues, syncs
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.platform.issues_orders_support import emitted, frozen_runtime

EXTERNAL = {"type": "code", "runner": "external"}


@pytest.fixture
async def env(database: Any) -> AsyncIterator[tuple[Runtime, FrozenClock, dict[str, Any]]]:
    rt, clock = await frozen_runtime(database, agent_down_after_seconds=900)
    now = rt.clock.now
    try:
        async with rt.db.transaction() as conn:
            key = await create_account(conn, "sources", now=now())
            consumer = await consumers.create_consumer(conn, key.account_id, name="Parc", now=now())
            accounting = await connections.create_connection(
                conn,
                rt.secret_box,
                account_id=key.account_id,
                consumer_id=consumer.id,
                integration_id=1001,
                name="Odoo",
                now=now(),
                credentials={
                    "url": "https://odoo.example",
                    "database": "d",
                    "username": "u",
                    "api_key": "k",
                },
            )
            agent = await connections.create_connection(
                conn,
                rt.secret_box,
                account_id=key.account_id,
                consumer_id=consumer.id,
                integration_id=2003,
                name="Till",
                now=now(),
                credentials={"store_code": "S"},
            )
        yield (
            rt,
            clock,
            {
                "account": key.account_id,
                "consumer": consumer.id,
                "accounting": accounting.connection.id,
                "agent": agent.connection.id,
                "token": agent.agent_token,
            },
        )
    finally:
        await rt.db.dispose()


def _open_body(
    ids: dict[str, Any],
    rt: Runtime,
    issue_id: str,
    connection: uuid.UUID,
    error_code: str,
    message: str,
    context: Any,
    syncid: Any = None,
    event: str = "account.issue.created",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "accountid": str(ids["account"]),
        "event": event,
        "consumerid": str(ids["consumer"]),
        "created": int(rt.clock.now().timestamp()),
        "issue_id": issue_id,
        "connectionid": str(connection),
        "syncid": syncid,
        "error_code": error_code,
        "issue_status": "open",
        "message": message,
        "context": context,
        **extra,
    }


def _closed_body(
    ids: dict[str, Any],
    rt: Runtime,
    issue_id: str,
    connection: uuid.UUID,
    error_code: str,
    syncid: Any = None,
) -> dict[str, Any]:
    return {
        "accountid": str(ids["account"]),
        "event": "account.issue.closed",
        "consumerid": str(ids["consumer"]),
        "created": int(rt.clock.now().timestamp()),
        "issue_id": issue_id,
        "connectionid": str(connection),
        "syncid": syncid,
        "error_code": error_code,
        "issue_status": "auto_closed",
    }


async def test_connection_inactive_raises_and_active_closes(env: Any) -> None:
    rt, clock, ids = env

    async def status(value: str) -> None:
        async with rt.db.transaction() as conn:
            await connections.set_connection_status(
                conn,
                account_id=ids["account"],
                connection_id=ids["accounting"],
                status=value,
                now=rt.clock.now(),
                error_code="ERROR_AUTH",
                message="Invalid credentials",
            )

    await status("inactive")
    [created] = await emitted(rt, "account.issue.created")
    assert created == _open_body(
        ids,
        rt,
        created["issue_id"],
        ids["accounting"],
        "CONNECTION_INACTIVE",
        "Invalid credentials",
        {"status": "inactive"},
    )
    await status("inactive")  # no change: no new occurrence
    assert await emitted(rt, "account.issue.updated") == []
    clock.advance(60)
    await status("active")
    assert await emitted(rt, "account.issue.closed") == [
        _closed_body(ids, rt, created["issue_id"], ids["accounting"], "CONNECTION_INACTIVE")
    ]


async def test_agent_down_raises_and_agent_up_closes(env: Any) -> None:
    rt, clock, ids = env

    async def ping() -> None:
        async with rt.db.transaction() as conn:
            await agents.agent_heartbeat(conn, ids["token"], now=rt.clock.now())

    await ping()
    assert await emitted(rt, "account.issue.created") == []
    clock.advance(901)
    async with rt.db.transaction() as conn:
        await agents.mark_down_stale_agents(conn, rt.clock.now(), down_after_seconds=900)
    [created] = await emitted(rt, "account.issue.created")
    assert created["error_code"] == "AGENT_DOWN"
    assert created["connectionid"] == str(ids["agent"])
    assert created["issue_status"] == "open" and created["syncid"] is None
    clock.advance(30)
    await ping()
    assert await emitted(rt, "account.issue.closed") == [
        _closed_body(ids, rt, created["issue_id"], ids["agent"], "AGENT_DOWN")
    ]


async def test_failed_executions_raise_count_and_a_success_closes(env: Any) -> None:
    rt, clock, ids = env
    async with rt.db.transaction() as conn:
        sync = await syncs.create_sync(
            conn,
            ids["account"],
            name="s",
            definition={},
            now=rt.clock.now(),
            flow_items=[
                {"name": "f", "execution": EXTERNAL, "triggers": [{"id": "t", "type": "event"}]}
            ],
        )
        flow = sync.flows[0]
        await syncs.enable_flow(
            conn,
            ids["account"],
            ids["consumer"],
            sync.id,
            flow.id,
            trigger_id=None,
            trigger_explicit=False,
            cronschedule=None,
            data=None,
            integrationids=[],
            now=rt.clock.now(),
        )

    async def run(status: str) -> uuid.UUID:
        async with rt.db.transaction() as conn:
            triggered = await executions.trigger_flow(
                conn,
                account_id=ids["account"],
                sync_id=sync.id,
                flow_id=flow.id,
                consumer_ids=None,
                data=None,
                trigger="event",
                now=rt.clock.now(),
                timeout_seconds=60,
                run_lease_seconds=60,
            )
            [job] = triggered.jobs
            await executions.finish_execution(
                conn,
                job.execution_id,
                status=status,
                now=rt.clock.now(),
                error_code="ERROR_API" if status == "error" else None,
                message="The API answered 503" if status == "error" else None,
            )
        return job.execution_id

    first = await run("error")
    [created] = await emitted(rt, "account.issue.created")
    context = {"flowid": str(flow.id), "executionid": str(first)}
    assert created == _open_body(
        ids,
        rt,
        created["issue_id"],
        ids["accounting"],
        "ERROR_API",
        "The API answered 503",
        context,
        syncid=str(sync.id),
    )
    clock.advance(60)
    second = await run("error")
    [updated] = await emitted(rt, "account.issue.updated")
    assert updated == _open_body(
        ids,
        rt,
        created["issue_id"],
        ids["accounting"],
        "ERROR_API",
        "The API answered 503",
        {"flowid": str(flow.id), "executionid": str(second)},
        syncid=str(sync.id),
        event="account.issue.updated",
        occurrences=2,
    )
    async with rt.db.read() as conn:
        events = await issues.issue_occurrences_of(conn, uuid.UUID(created["issue_id"]))
    assert [item.execution_id for item in events] == [second, first]
    clock.advance(60)
    await run("success")
    assert await emitted(rt, "account.issue.closed") == [
        _closed_body(
            ids, rt, created["issue_id"], ids["accounting"], "ERROR_API", syncid=str(sync.id)
        )
    ]
