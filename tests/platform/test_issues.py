"""Consumer issues: opening, counting, every auto-close path, reads and the report endpoint."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hookline.api.app import create_app
from hookline.clock import FrozenClock
from hookline.platform import issues
from hookline.platform.accounts import create_api_key
from hookline.runtime import Runtime
from tests.platform.issues_orders_support import World, emitted, frozen_runtime, make_world
from tests.support import ApiClient, Ticks

DAY = 86400.0


@pytest.fixture
async def env(database: Any) -> AsyncIterator[tuple[Runtime, FrozenClock, World]]:
    rt, clock = await frozen_runtime(database, issue_autoclose_days=7)
    try:
        yield rt, clock, await make_world(rt)
    finally:
        await rt.db.dispose()


async def _raise(rt: Runtime, world: World, **extra: Any) -> issues.RaisedIssue:
    values: dict[str, Any] = {
        "account_id": world.account_id,
        "consumer_id": world.consumer_id,
        "connection_id": world.accounting,
        "sync_id": world.sync_id,
        "flow_id": world.flow_id,
        "error_code": "ERROR_AUTH",
        "message": "The credentials were refused",
        "context": {"flow": "invoices"},
        **extra,
    }
    async with rt.db.transaction() as conn:
        return await issues.raise_issue(conn, now=rt.clock.now(), **values)


async def test_first_occurrence_opens_then_counts_up(env: Any) -> None:
    rt, clock, world = env
    first = await _raise(rt, world)
    clock.advance(60)
    second = await _raise(rt, world, message="Refused again", context={"flow": "x"})
    clock.advance(60)
    third = await _raise(rt, world)
    assert first.created and not second.created and not third.created
    assert first.issue.id == second.issue.id == third.issue.id
    assert third.issue.occurrences == 3
    assert third.issue.last_seen == rt.clock.now()
    assert third.issue.first_seen == rt.clock.now() - __import__("datetime").timedelta(seconds=120)

    created = await emitted(rt, "account.issue.created")
    assert created == [
        {
            "accountid": str(world.account_id),
            "event": "account.issue.created",
            "consumerid": str(world.consumer_id),
            "created": int(first.issue.first_seen.timestamp()),
            "issue_id": str(first.issue.id),
            "connectionid": str(world.accounting),
            "syncid": str(world.sync_id),
            "error_code": "ERROR_AUTH",
            "issue_status": "open",
            "message": "The credentials were refused",
            "context": {"flow": "invoices"},
        }
    ]
    updated = await emitted(rt, "account.issue.updated")
    assert [body["occurrences"] for body in updated] == [2, 3]
    assert updated[0] == {
        "accountid": str(world.account_id),
        "event": "account.issue.updated",
        "consumerid": str(world.consumer_id),
        "created": int(first.issue.first_seen.timestamp()) + 60,
        "issue_id": str(first.issue.id),
        "connectionid": str(world.accounting),
        "syncid": str(world.sync_id),
        "error_code": "ERROR_AUTH",
        "issue_status": "open",
        "message": "Refused again",
        "context": {"flow": "x"},
        "occurrences": 2,
    }
    async with rt.db.read() as conn:
        occurrences = await issues.issue_occurrences_of(conn, first.issue.id)
    assert len(occurrences) == 3


async def test_each_part_of_the_key_separates_issues(env: Any) -> None:
    rt, _, world = env
    base = await _raise(rt, world)
    others = [
        await _raise(rt, world, error_code="ERROR_OTHER"),
        await _raise(rt, world, sync_id=None),
        await _raise(rt, world, connection_id=world.pos),
    ]
    assert all(item.created for item in others)
    assert len({base.issue.id, *(item.issue.id for item in others)}) == 4
    no_sync = await _raise(rt, world, sync_id=None)
    assert not no_sync.created and no_sync.issue.occurrences == 2
    body = (await emitted(rt, "account.issue.created"))[2]
    assert body["syncid"] is None


async def test_concurrent_first_occurrences_open_one_issue(env: Any) -> None:
    rt, _, world = env
    results = await asyncio.gather(*(_raise(rt, world) for _ in range(6)))
    assert sum(1 for item in results if item.created) == 1
    assert len({item.issue.id for item in results}) == 1
    assert sorted(item.issue.occurrences for item in results) == [1, 2, 3, 4, 5, 6]
    assert len(await emitted(rt, "account.issue.created")) == 1
    assert len(await emitted(rt, "account.issue.updated")) == 5


def _closed_body(
    world: World,
    issue: issues.Issue,
    created: int,
    *,
    connection: uuid.UUID | None = None,
    sync: Any = "default",
    error_code: str = "ERROR_AUTH",
) -> dict[str, Any]:
    return {
        "accountid": str(world.account_id),
        "event": "account.issue.closed",
        "consumerid": str(world.consumer_id),
        "created": created,
        "issue_id": str(issue.id),
        "connectionid": str(connection or world.accounting),
        "syncid": str(world.sync_id) if sync == "default" else sync,
        "error_code": error_code,
        "issue_status": "auto_closed",
    }


async def test_a_successful_execution_closes_the_flows_issue(env: Any) -> None:
    rt, clock, world = env
    execution = uuid.uuid4()
    async with rt.db.transaction() as conn:
        await issues.execution_finished(
            conn,
            account_id=world.account_id,
            consumer_id=world.consumer_id,
            sync_id=world.sync_id,
            flow_id=world.flow_id,
            execution_id=execution,
            status="error",
            error_code="ERROR_TIMEOUT",
            message="The software timed out",
            now=rt.clock.now(),
        )
    created = await emitted(rt, "account.issue.created")
    assert len(created) == 1
    assert created[0]["error_code"] == "ERROR_TIMEOUT"
    assert created[0]["connectionid"] == str(world.accounting)  # oldest active connection
    assert created[0]["context"] == {"flowid": str(world.flow_id), "executionid": str(execution)}
    async with rt.db.read() as conn:
        [occurrence] = await issues.issue_occurrences_of(conn, uuid.UUID(created[0]["issue_id"]))
    assert occurrence.execution_id == execution

    # Another flow's success leaves it open; this flow's success closes it.
    clock.advance(30)
    for flow_id in (uuid.uuid4(), world.flow_id):
        async with rt.db.transaction() as conn:
            await issues.execution_finished(
                conn,
                account_id=world.account_id,
                consumer_id=world.consumer_id,
                sync_id=world.sync_id,
                flow_id=flow_id,
                execution_id=uuid.uuid4(),
                status="success",
                now=rt.clock.now(),
            )
    closed = await emitted(rt, "account.issue.closed")
    async with rt.db.read() as conn:
        issue = await issues.get_issue(conn, world.account_id, uuid.UUID(created[0]["issue_id"]))
    assert issue.status == "auto_closed" and issue.closed_at == rt.clock.now()
    assert closed == [
        _closed_body(world, issue, int(rt.clock.now().timestamp()), error_code="ERROR_TIMEOUT")
    ]


async def test_connection_active_again_closes_its_issue(env: Any) -> None:
    rt, _, world = env
    hook = issues.connection_status_changed
    async with rt.db.transaction() as conn:
        await hook(
            conn,
            account_id=world.account_id,
            consumer_id=world.consumer_id,
            connection_id=world.pos,
            status="inactive",
            now=rt.clock.now(),
        )
    async with rt.db.transaction() as conn:
        await hook(
            conn,
            account_id=world.account_id,
            consumer_id=world.consumer_id,
            connection_id=world.pos,
            status="active",
            now=rt.clock.now(),
        )
    [created] = await emitted(rt, "account.issue.created")
    assert created["error_code"] == "CONNECTION_INACTIVE"
    assert created["syncid"] is None and created["connectionid"] == str(world.pos)
    async with rt.db.read() as conn:
        issue = await issues.get_issue(conn, world.account_id, uuid.UUID(created["issue_id"]))
    assert await emitted(rt, "account.issue.closed") == [
        _closed_body(
            world,
            issue,
            int(rt.clock.now().timestamp()),
            connection=world.pos,
            sync=None,
            error_code="CONNECTION_INACTIVE",
        )
    ]


async def test_agent_up_closes_agent_down_and_a_later_outage_opens_a_new_issue(env: Any) -> None:
    rt, clock, world = env

    async def agent(status: str) -> None:
        async with rt.db.transaction() as conn:
            await issues.agent_status_changed(
                conn,
                account_id=world.account_id,
                consumer_id=world.consumer_id,
                connection_id=world.pos,
                agent_status=status,
                now=rt.clock.now(),
            )

    await agent("down")
    clock.advance(600)
    await agent("up")
    clock.advance(600)
    await agent("down")
    created = await emitted(rt, "account.issue.created")
    closed = await emitted(rt, "account.issue.closed")
    assert [body["error_code"] for body in created] == ["AGENT_DOWN", "AGENT_DOWN"]
    assert created[0]["issue_id"] != created[1]["issue_id"]
    assert [body["issue_id"] for body in closed] == [created[0]["issue_id"]]
    assert await emitted(rt, "account.issue.updated") == []


async def test_issues_close_after_the_configured_days_without_occurrence(env: Any) -> None:
    rt, clock, world = env
    stale = await _raise(rt, world)
    clock.advance(3 * DAY)
    fresh = await _raise(rt, world, error_code="ERROR_FRESH")
    clock.advance(4 * DAY - 1)
    async with rt.db.transaction() as conn:
        assert await issues.close_stale_issues(conn, rt.clock.now(), days=7) == []
    clock.advance(1)
    async with rt.db.transaction() as conn:
        closed = await issues.close_stale_issues(conn, rt.clock.now(), days=7)
    assert [issue.id for issue in closed] == [stale.issue.id]
    assert await emitted(rt, "account.issue.closed") == [
        _closed_body(world, closed[0], int(rt.clock.now().timestamp()))
    ]
    # A new occurrence after closing opens a new issue; the fresh one is still open.
    again = await _raise(rt, world)
    assert again.created and again.issue.id != stale.issue.id
    async with rt.db.read() as conn:
        assert (await issues.get_issue(conn, world.account_id, fresh.issue.id)).status == "open"


async def test_the_autoclose_service_uses_the_setting(env: Any) -> None:
    rt, clock, world = env
    await _raise(rt, world)
    clock.advance(7 * DAY)
    stop = asyncio.Event()
    ticks = Ticks()
    task = asyncio.create_task(issues.run_issue_autoclose(rt, stop, ticked=ticks))
    try:
        await ticks.next()  # the first tick already sees the issue 7 days quiet
    finally:
        stop.set()
        await task
    assert len(await emitted(rt, "account.issue.closed")) == 1


# --- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
async def http(env: Any) -> AsyncIterator[tuple[ApiClient, Runtime, FrozenClock, World]]:
    rt, clock, world = env
    async with rt.db.transaction() as conn:
        key = await create_api_key(conn, world.account_id, now=rt.clock.now())
    app = create_app(rt, run_background=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hookline.test"
    ) as client:
        api = ApiClient(client, key)
        await api.login()
        yield api, rt, clock, world


async def test_report_endpoint_and_reads(http: Any) -> None:
    api, rt, clock, world = http
    url = f"/consumers/{world.consumer_id}/issues"
    body = {
        "connectionid": str(world.pos),
        "error_code": "ERROR_MENU",
        "level": "warning",
        "message": "Unknown product in menu",
        "context": {"product": "p-9"},
    }
    first = await api.post(url, json=body)
    assert first.status_code == 201, first.text
    clock.advance(90)
    second = await api.post(url, json={**body, "message": "Unknown product again"})
    item = second.json()
    assert item["id"] == first.json()["id"]
    assert item["occurrences"] == 2
    assert item["integration_id"] == 2001 and item["integration_name"] == "Lightspeed Restaurant"
    assert item["error"] == {
        "error_code": "ERROR_MENU",
        "status": "open",
        "title": "Unknown product again",
    }
    assert item["level"] == "warning"

    detail = (await api.get(f"/issues/{item['id']}")).json()
    assert [event["message"] for event in detail["events"]] == [
        "Unknown product again",
        "Unknown product in menu",
    ]
    assert detail["events"][0]["execution_id"] == ""
    assert detail["events"][1]["context"] == {"product": "p-9"}
    last = (await api.get(f"/issues/{item['id']}", params={"last_execution_only": "true"})).json()
    assert len(last["events"]) == 1

    await _raise(rt, world)  # an error-level issue on the accounting connection
    all_issues = (await api.get("/issues")).json()
    assert len(all_issues) == 2
    assert [
        i["error"]["error_code"]
        for i in (await api.get("/issues", params={"level": "warning"})).json()
    ] == ["ERROR_MENU"]
    assert [
        i["error"]["error_code"]
        for i in (await api.get(url, params={"error_code": "ERROR_AUTH"})).json()
    ] == ["ERROR_AUTH"]
    today = rt.clock.now().date().isoformat()
    assert len((await api.get("/issues", params={"created_on": today})).json()) == 2
    assert (await api.get("/issues", params={"created_on": "2001-01-01"})).json() == []
    assert (await api.get("/issues", params={"status": "closed"})).json() == []
    async with rt.db.transaction() as conn:
        await issues.close_issues(
            conn, consumer_id=world.consumer_id, connection_id=world.pos, now=rt.clock.now()
        )
    closed = (await api.get("/issues", params={"status": "closed"})).json()
    assert [i["id"] for i in closed] == [item["id"]]
    assert closed[0]["error"]["status"] == "auto_closed"
    assert len((await api.get("/issues", params={"status": "open"})).json()) == 1


async def test_report_endpoint_rejects_bad_input_and_other_accounts(http: Any) -> None:
    api, rt, _, world = http
    url = f"/consumers/{world.consumer_id}/issues"
    good = {"connectionid": str(world.pos), "error_code": "E", "message": "m"}
    assert (await api.post(url, json={**good, "level": "fatal"})).status_code == 422
    assert (await api.post(url, json={**good, "error_code": ""})).status_code == 422
    missing = await api.post(url, json={**good, "connectionid": str(uuid.uuid4())})
    assert missing.status_code == 404
    assert (await api.post(url, json={**good, "syncid": str(uuid.uuid4())})).status_code == 404
    assert (await api.post(f"/consumers/{uuid.uuid4()}/issues", json=good)).status_code == 404
    assert (await api.get("/consumers/not-a-uuid/issues")).status_code == 404
    assert (await api.get(f"/issues/{uuid.uuid4()}")).status_code == 404
    assert (await api.get("/issues", params={"status": "maybe"})).status_code == 422

    # Another account sees none of it.
    created = (await api.post(url, json=good)).json()
    other_world = await make_world(rt)
    async with rt.db.transaction() as conn:
        key = await create_api_key(conn, other_world.account_id, now=rt.clock.now())
    other = ApiClient(api.http, key)
    await other.login()
    assert (await other.get(f"/issues/{created['id']}")).status_code == 404
    assert (await other.get(url)).status_code == 404
    assert (await other.get("/issues")).json() == []
    assert (await other.post(url, json=good)).status_code == 404
