"""The flow scheduler: cron due times with an injectable clock, one run per due time across
processes, catching up once after a pause, and the deadline sweep of running executions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from hookline.clock import FrozenClock
from hookline.platform.scheduler import (
    claim_due_time,
    end_overdue_executions,
    run_due_flows,
    run_flow_scheduler,
)
from hookline.runtime import Runtime
from hookline.store.tables import executions, flows
from tests.platform.syncs_support import (
    START,
    Setup,
    enable,
    flow_body,
    flow_events,
    frozen_app,
    new_consumer,
    new_sync,
)
from tests.support import Ticks

EVERY_5_MIN = [{"id": "timer", "type": "timer", "cronschedules": ["*/5 * * * *"]}]


async def _timer_flow(s: Setup, consumers: int = 2) -> tuple[str, str, list[str]]:
    sync = await new_sync(s.api, flow_body("every 5", triggers=EVERY_5_MIN))
    sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
    ids = [await new_consumer(s.api, f"C{n}") for n in range(consumers)]
    for consumer in ids:
        await enable(s.api, consumer, sync_id, flow_id)
    return sync_id, flow_id, ids


async def _next_run(rt: Runtime, flow_id: str) -> Any:
    async with rt.db.read() as conn:
        return (
            await conn.execute(select(flows.c.next_run_at).where(flows.c.id == uuid.UUID(flow_id)))
        ).scalar_one()


async def _children(rt: Runtime, parent: uuid.UUID) -> list[Any]:
    async with rt.db.read() as conn:
        return list(
            (
                await conn.execute(
                    select(executions)
                    .where(executions.c.parent_id == parent)
                    .order_by(executions.c.consumer_id)
                )
            ).all()
        )


async def test_timer_flow_runs_at_its_cron_time_once_across_two_processes(database: Any) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, consumers = await _timer_flow(s)
        due = START.replace(minute=5, second=0)
        assert await _next_run(s.rt, flow_id) == due
        assert await run_due_flows(s.rt, due - timedelta(seconds=1)) == []

        other = Runtime.create(database.settings(), clock=FrozenClock(due))
        try:
            first, second = await asyncio.gather(
                run_due_flows(s.rt, due), run_due_flows(other, due)
            )
        finally:
            await other.db.dispose()
        parents = first + second
        assert len(parents) == 1
        assert await _next_run(s.rt, flow_id) == START.replace(minute=10, second=0)
        children = await _children(s.rt, parents[0])
        assert sorted(str(row.consumer_id) for row in children) == sorted(consumers)
        assert {(row.trigger, row.status, row.data["scheduled_at"]) for row in children} == {
            ("timer", "running", due.isoformat())
        }
        assert await run_due_flows(s.rt, due + timedelta(minutes=1)) == []

        # The next due time finds both consumers still running: nothing new starts.
        assert await run_due_flows(s.rt, START.replace(minute=10, second=0)) == []
        assert await _next_run(s.rt, flow_id) == START.replace(minute=15, second=0)
        page = (await s.api.get(f"/syncs/{sync_id}/executions")).json()
        assert page["total"] == 2


async def test_a_due_time_is_claimed_by_exactly_one_caller(database: Any) -> None:
    async with frozen_app(database) as s:
        _, flow_id, _ = await _timer_flow(s, consumers=0)
        due = START.replace(minute=5, second=0)
        later = START.replace(minute=10, second=0)
        async with s.rt.db.transaction() as conn:
            assert await claim_due_time(conn, uuid.UUID(flow_id), due, later) is True
        async with s.rt.db.transaction() as conn:
            assert await claim_due_time(conn, uuid.UUID(flow_id), due, later) is False
        assert await _next_run(s.rt, flow_id) == later


async def test_a_schedule_that_fell_behind_runs_once_then_moves_past_now(database: Any) -> None:
    async with frozen_app(database) as s:
        _, flow_id, _ = await _timer_flow(s, consumers=1)
        late = START + timedelta(hours=3, minutes=2)
        parents = await run_due_flows(s.rt, late)
        assert len(parents) == 1
        assert await _next_run(s.rt, flow_id) == START.replace(hour=15, minute=5, second=0)


async def test_timer_flow_without_enabled_consumers_only_advances(database: Any) -> None:
    async with frozen_app(database) as s:
        sync = await new_sync(s.api, flow_body("lonely", triggers=EVERY_5_MIN))
        flow_id = sync["flows"][0]["id"]
        assert await run_due_flows(s.rt, START.replace(minute=5, second=0)) == []
        assert await _next_run(s.rt, flow_id) == START.replace(minute=10, second=0)
        assert (await s.api.get(f"/syncs/{sync['syncid']}/executions")).json()["total"] == 0


async def test_overdue_executions_end_as_error_once(database: Any) -> None:
    async with frozen_app(database, execution_timeout_seconds=60) as s:
        sync_id, flow_id, (c1,) = await _timer_flow(s, consumers=1)
        triggered = await s.api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
        child = triggered.json()["data"]["executions"][0]["executionid"]
        parent = triggered.json()["data"]["executionid"]
        assert await end_overdue_executions(s.rt, START + timedelta(seconds=59)) == 0
        s.clock.advance(60)
        assert await end_overdue_executions(s.rt) == 1
        assert await end_overdue_executions(s.rt) == 0
        base = f"/syncs/{sync_id}/flows/{flow_id}/executions"
        assert (await s.api.get(f"{base}/{parent}")).json()["status"] == "error"
        late = await s.api.post(f"{base}/{child}/result", json={"status": "success"})
        assert late.status_code == 409
        executed = [
            body
            for body in await flow_events(s.rt, s.api.account_id)
            if body["event"] == "account.flow.executed"
        ]
        assert executed == [
            {
                "accountid": s.api.account_id,
                "event": "account.flow.executed",
                "consumerid": c1,
                "created": int((START + timedelta(seconds=60)).timestamp()),
                "flowid": flow_id,
                "syncid": sync_id,
                "status": "error",
                "executionid": child,
                "parentexecutionid": parent,
            }
        ]


async def test_the_background_service_ticks_until_stopped(database: Any) -> None:
    async with frozen_app(database, scheduler_interval_seconds=0.05) as s:
        _, flow_id, _ = await _timer_flow(s, consumers=1)
        s.clock.set(START.replace(minute=5, second=0))
        stop = asyncio.Event()
        ticks = Ticks()
        service = asyncio.create_task(run_flow_scheduler(s.rt, stop, ticked=ticks))
        try:
            await ticks.next()
            await ticks.next()  # and ticks again, without running the due time twice
        finally:
            stop.set()
            await asyncio.wait_for(service, timeout=5)
        assert await _next_run(s.rt, flow_id) == START.replace(minute=10, second=0)


async def test_each_consumer_runs_on_the_schedule_it_chose(database: Any) -> None:
    """A consumer's own ``cronschedule`` replaces its trigger's: at each due time only the
    consumers whose schedule fires then are run, and the flow wakes for every schedule."""
    async with frozen_app(database) as s:
        sync = await new_sync(s.api, flow_body("per consumer", triggers=EVERY_5_MIN))
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        default, own = (await new_consumer(s.api, "default"), await new_consumer(s.api, "own"))
        await enable(s.api, default, sync_id, flow_id)
        enabled = await enable(s.api, own, sync_id, flow_id, cronschedule="2 * * * *")
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["trigger"]["cronschedule"] == "2 * * * *"

        at_2 = START.replace(minute=2, second=0)
        assert await _next_run(s.rt, flow_id) == at_2  # brought forward by the consumer
        # Changing the flow's own schedules keeps the consumer's in the wake-ups.
        every_10 = [{"id": "timer", "type": "timer", "cronschedules": ["*/10 * * * *"]}]
        reposted = await s.api.post(
            f"/syncs/{sync_id}/flows", json=flow_body("per consumer", triggers=every_10)
        )
        assert reposted.status_code == 200 and reposted.json()["id"] == flow_id
        assert await _next_run(s.rt, flow_id) == at_2
        await s.api.post(
            f"/syncs/{sync_id}/flows", json=flow_body("per consumer", triggers=EVERY_5_MIN)
        )
        (parent,) = await run_due_flows(s.rt, at_2)
        assert [str(row.consumer_id) for row in await _children(s.rt, parent)] == [own]
        at_5 = START.replace(minute=5, second=0)
        assert await _next_run(s.rt, flow_id) == at_5
        (parent,) = await run_due_flows(s.rt, at_5)
        assert [str(row.consumer_id) for row in await _children(s.rt, parent)] == [default]
        assert await _next_run(s.rt, flow_id) == START.replace(minute=10, second=0)

        # Once it disables the flow, its time comes and goes without a run.
        disabled = await s.api.post(
            f"/consumers/{own}/syncs/{sync_id}/flows/{flow_id}/disable", json={}
        )
        assert disabled.status_code in (200, 204), disabled.text
        next_hour = START.replace(hour=13, minute=2, second=0)
        async with s.rt.db.transaction() as conn:  # make the consumer's time the next due
            await claim_due_time(
                conn, uuid.UUID(flow_id), START.replace(minute=10, second=0), next_hour
            )
        assert await run_due_flows(s.rt, next_hour) == []
        assert await _next_run(s.rt, flow_id) == START.replace(hour=13, minute=5, second=0)


async def test_a_consumer_on_an_event_trigger_is_never_run_by_the_timer(database: Any) -> None:
    async with frozen_app(database) as s:
        triggers = [{"id": "on-event", "type": "event"}, *EVERY_5_MIN]
        sync = await new_sync(s.api, flow_body("both", triggers=triggers))
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        by_event, by_timer = (await new_consumer(s.api, "E"), await new_consumer(s.api, "T"))
        await enable(s.api, by_event, sync_id, flow_id, triggerid="on-event")
        await enable(s.api, by_timer, sync_id, flow_id, triggerid="timer")
        (parent,) = await run_due_flows(s.rt, START.replace(minute=5, second=0))
        assert [str(row.consumer_id) for row in await _children(s.rt, parent)] == [by_timer]
