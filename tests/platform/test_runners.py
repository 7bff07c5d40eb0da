"""Runners plugged in on a runtime: they return what their run came to, and executions
records it (ended with its status, or handed off: no longer leased to this process)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from hookline.platform import syncs
from hookline.platform.executions import trigger_flow
from hookline.platform.runners import (
    Finished,
    HandedOff,
    RunJob,
    RunnerRegistry,
    RunOutcome,
    runners_of,
)
from hookline.platform.runs import dispatch, drain
from hookline.platform.statuses import ExecutionStatus
from hookline.runtime import Runtime
from hookline.store.tables import executions
from tests.platform.syncs_support import Setup, enable, flow_events, frozen_app, new_consumer


class ScriptedRunner:
    """Answers every run with ``outcome`` and keeps the jobs it was given."""

    def __init__(self, outcome: RunOutcome, *, resumable: bool) -> None:
        self.name = "scripted"
        self.resumable = resumable
        self.outcome = outcome
        self.jobs: list[RunJob] = []

    def validate(self, execution: dict[str, Any]) -> None:
        return None

    async def run(self, runtime: Runtime, job: RunJob) -> RunOutcome:
        self.jobs.append(job)
        return self.outcome


async def _run_once(s: Setup, registry: RunnerRegistry) -> uuid.UUID:
    """A flow on the scripted runner, enabled for one consumer, triggered and run to its end."""
    account_id = uuid.UUID(s.api.account_id)
    flow = {
        "name": "scripted",
        "execution": {"type": "code", "runner": "scripted"},
        "triggers": [{"id": "trigger-1", "type": "event"}],
    }
    async with s.rt.db.transaction() as conn:
        sync = await syncs.create_sync(
            conn,
            account_id,
            name="Sales",
            definition={},
            flow_items=[flow],
            now=s.clock.now(),
            runners=registry,
        )
    consumer = await new_consumer(s.api)
    response = await enable(s.api, consumer, str(sync.id), str(sync.flows[0].id))
    assert response.status_code == 200, response.text
    async with s.rt.db.transaction() as conn:
        triggered = await trigger_flow(
            conn,
            account_id=account_id,
            sync_id=sync.id,
            flow_id=sync.flows[0].id,
            consumer_ids=None,
            data=None,
            trigger="event",
            now=s.clock.now(),
            timeout_seconds=60,
            run_lease_seconds=60,
            runners=registry,
        )
    assert triggered is not None and len(triggered.jobs) == 1
    dispatch(s.rt, triggered.jobs)
    await drain()
    return triggered.jobs[0].execution_id


async def _row(rt: Runtime, execution_id: uuid.UUID) -> Any:
    async with rt.db.read() as conn:
        return (await conn.execute(select(executions).where(executions.c.id == execution_id))).one()


async def test_a_finished_outcome_ends_the_execution_and_fires_its_event(database: Any) -> None:
    async with frozen_app(database) as s:
        runner = ScriptedRunner(
            Finished(ExecutionStatus.ERROR, "boom", "E_SCRIPTED"), resumable=False
        )
        runners_of(s.rt).register(runner)
        execution_id = await _run_once(s, runners_of(s.rt))

        assert [job.execution_id for job in runner.jobs] == [execution_id]
        row = await _row(s.rt, execution_id)
        assert (row.status, row.message, row.error_code) == ("error", "boom", "E_SCRIPTED")
        executed = [
            body
            for body in await flow_events(s.rt, s.api.account_id)
            if body["event"] == "account.flow.executed"
        ]
        assert [(body["executionid"], body["status"]) for body in executed] == [
            (str(execution_id), "error")
        ]


async def test_a_handed_off_run_stays_running_and_is_no_longer_leased(database: Any) -> None:
    async with frozen_app(database) as s:
        runners_of(s.rt).register(ScriptedRunner(HandedOff(), resumable=True))
        execution_id = await _run_once(s, runners_of(s.rt))

        row = await _row(s.rt, execution_id)
        assert row.status == "running"
        assert row.run_lease_until is None  # leased at the start (resumable), then dropped


async def test_each_runtime_has_its_own_registry_with_the_built_ins(database: Any) -> None:
    async with frozen_app(database) as s:
        other = Runtime.create(database.settings())
        try:
            runners_of(s.rt).register(ScriptedRunner(None, resumable=False))

            assert runners_of(s.rt) is runners_of(s.rt)
            assert runners_of(s.rt).names() == ["external", "http", "scripted"]
            assert runners_of(other).names() == ["external", "http"]
        finally:
            await other.db.dispose()


async def test_the_api_runs_a_flow_on_a_runner_registered_on_the_runtime(database: Any) -> None:
    async with frozen_app(database) as s:
        runner = ScriptedRunner(Finished(ExecutionStatus.SUCCESS, "ok", None), resumable=False)
        runners_of(s.rt).register(runner)
        flow = {
            "name": "scripted",
            "execution": {"type": "code", "runner": "scripted", "data": {"code": "x"}},
            "triggers": [{"id": "trigger-1", "type": "event"}],
        }
        sync = await s.api.post(
            "/syncs", json={"name": "Sales", "connections": [{"one_api": 1}], "flows": [flow]}
        )
        assert sync.status_code == 200, sync.text
        sync_id, flow_id = sync.json()["syncid"], sync.json()["flows"][0]["id"]
        consumer = await new_consumer(s.api)
        assert (await enable(s.api, consumer, sync_id, flow_id)).status_code == 200
        triggered = await s.api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
        assert triggered.status_code == 200, triggered.text
        await drain()
        [job] = runner.jobs
        assert str(job.consumer_id) == consumer
        events = await flow_events(s.rt, s.api.account_id)
        assert [e["event"] for e in events][-1] == "account.flow.executed"
        assert events[-1]["status"] == "success"
