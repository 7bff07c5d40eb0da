"""Triggering flows: parent and child executions, the 409 rule, runners (HTTP against a real
receiver, and the external result endpoint), executed events and the execution reads."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from typing import Any

from hookline.errors import Conflict
from hookline.platform.executions import trigger_flow
from hookline.platform.runs import drain
from hookline.runtime import Runtime
from tests.platform.syncs_support import (
    START,
    Setup,
    enable,
    flow_body,
    flow_event,
    flow_events,
    frozen_app,
    new_consumer,
    new_sync,
)
from tests.receiver import Reply

STAMP = "2026-01-15T12:00:30Z"


async def _setup(
    s: Setup, consumers: int, execution: dict[str, Any] | None = None, enabled: int | None = None
) -> tuple[str, str, list[str]]:
    sync = await new_sync(s.api, flow_body(execution=execution))
    sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
    ids = [await new_consumer(s.api, f"Consumer {n}") for n in range(consumers)]
    for consumer in ids[: consumers if enabled is None else enabled]:
        assert (await enable(s.api, consumer, sync_id, flow_id)).status_code == 200
    return sync_id, flow_id, ids


def _executed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [body for body in events if body["event"] == "account.flow.executed"]


async def test_trigger_creates_one_child_per_enabled_consumer_and_reports_end_them(
    database: Any,
) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, (c1, c2, c3) = await _setup(s, 3, enabled=2)
        response = await s.api.post(
            f"/syncs/{sync_id}/flows/{flow_id}/event",
            json={"data": {"is_preview": False, "extra": 1}},
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        parent = answer["data"]["executionid"]
        children = {
            item["consumerid"]: item["executionid"] for item in answer["data"]["executions"]
        }
        assert answer == {
            "status": "success",
            "message": "The flow was triggered",
            "data": {
                "executionid": parent,
                "executions": [
                    {"consumerid": c, "executionid": children[c]} for c in sorted([c1, c2])
                ],
                "skipped_consumers": [],
            },
        }
        assert set(children) == {c1, c2}

        base = f"/syncs/{sync_id}/flows/{flow_id}/executions"
        assert (await s.api.get(f"{base}/{parent}")).json() == {
            "id": parent,
            "parentexecutionid": None,
            "start": STAMP,
            "end": None,
            "status": "running",
        }
        assert (await s.api.get(f"{base}/{parent}", params={"consumerid": c1})).json() == {
            "id": children[c1],
            "parentexecutionid": parent,
            "start": STAMP,
            "end": None,
            "status": "running",
        }
        assert (await s.api.get(f"{base}/{parent}", params={"consumerid": c3})).status_code == 404

        s.clock.advance(30)
        ok = await s.api.post(f"{base}/{children[c1]}/result", json={"status": "success"})
        assert ok.status_code == 200
        assert ok.json() == {
            "id": children[c1],
            "parentexecutionid": parent,
            "start": STAMP,
            "end": "2026-01-15T12:01:00Z",
            "status": "success",
            "consumer_id": c1,
            "message": None,
            "error_code": None,
        }
        assert (await s.api.get(f"{base}/{parent}")).json()["status"] == "running"
        failed = await s.api.post(
            f"{base}/{children[c2]}/result",
            json={"status": "error", "message": "VAT code 21 unknown", "error_code": "E_VAT"},
        )
        assert failed.status_code == 200
        assert (await s.api.get(f"{base}/{parent}")).json() == {
            "id": parent,
            "parentexecutionid": None,
            "start": STAMP,
            "end": "2026-01-15T12:01:00Z",
            "status": "error",
        }

        again = await s.api.post(f"{base}/{children[c1]}/result", json={"status": "error"})
        assert again.status_code == 409
        assert again.json()["error_code"] == "ERROR_EXECUTION_FINISHED"
        on_parent = await s.api.post(f"{base}/{parent}/result", json={"status": "success"})
        assert on_parent.status_code == 400
        unknown = await s.api.post(f"{base}/{uuid.uuid4()}/result", json={"status": "success"})
        assert unknown.status_code == 404
        bad = await s.api.post(f"{base}/{children[c1]}/result", json={"status": "done"})
        assert bad.status_code == 422

        done = START.replace(minute=1, second=0)
        assert _executed(await flow_events(s.rt, s.api.account_id)) == [
            flow_event(
                s.api,
                "account.flow.executed",
                c1,
                done,
                flowid=flow_id,
                syncid=sync_id,
                status="success",
                executionid=children[c1],
                parentexecutionid=parent,
            ),
            flow_event(
                s.api,
                "account.flow.executed",
                c2,
                done,
                flowid=flow_id,
                syncid=sync_id,
                status="error",
                executionid=children[c2],
                parentexecutionid=parent,
            ),
        ]


async def test_execution_reads_page_and_filter(database: Any) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, (c1, c2) = await _setup(s, 2)
        base = f"/syncs/{sync_id}/flows/{flow_id}"
        parents = []
        for _ in range(2):
            response = await s.api.post(f"{base}/event", json={})
            assert response.status_code == 200, response.text
            triggered = response.json()["data"]
            parents.append(triggered)
            for item in triggered["executions"]:
                await s.api.post(
                    f"{base}/executions/{item['executionid']}/result", json={"status": "success"}
                )
            s.clock.advance(3600)
            await s.api.login()  # tokens live 30 minutes

        page = (
            await s.api.get(f"/syncs/{sync_id}/executions", params={"size": 3, "page": 1})
        ).json()
        assert page["total"] == 4
        assert (page["page"], page["size"]) == (1, 3)
        newest = {item["consumerid"]: item["executionid"] for item in parents[1]["executions"]}
        assert page["items"][0] == {
            "id": newest[c2],
            "parentexecutionid": parents[1]["executionid"],
            "start": "2026-01-15T13:00:30Z",
            "end": "2026-01-15T13:00:30Z",
            "status": "success",
            "consumer_id": c2,
            "flow_id": flow_id,
        }
        second = (
            await s.api.get(f"/syncs/{sync_id}/executions", params={"size": 3, "page": 2})
        ).json()
        assert len(second["items"]) == 1
        dated = (
            await s.api.get(
                f"/syncs/{sync_id}/executions", params={"date_from": "2026-01-15T12:30:00"}
            )
        ).json()
        assert dated["total"] == 2
        assert (
            await s.api.get(f"/syncs/{sync_id}/executions", params={"flowid": str(uuid.uuid4())})
        ).json()["total"] == 0

        mine = (
            await s.api.get(f"/consumers/{c1}/syncs/{sync_id}/flows/{flow_id}/executions")
        ).json()
        assert [item["parentexecutionid"] for item in mine] == [
            parents[1]["executionid"],
            parents[0]["executionid"],
        ]
        assert (
            await s.api.get(f"/consumers/{uuid.uuid4()}/syncs/{sync_id}/flows/{flow_id}/executions")
        ).status_code == 404


async def test_a_running_execution_blocks_a_second_one_for_that_consumer(database: Any) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, (c1, c2) = await _setup(s, 2)
        url = f"/syncs/{sync_id}/flows/{flow_id}/event"
        first = await s.api.post(url, json={"consumers": [c1]})
        assert first.status_code == 200
        blocked = await s.api.post(url, json={"consumers": [c1]})
        assert blocked.status_code == 409
        assert blocked.json()["error_code"] == "ERROR_EXECUTION_RUNNING"

        both = await s.api.post(url, json={})
        assert both.status_code == 200
        data = both.json()["data"]
        assert [item["consumerid"] for item in data["executions"]] == [c2]
        assert data["skipped_consumers"] == [c1]
        assert (await s.api.post(url, json={})).status_code == 409

        child = first.json()["data"]["executions"][0]["executionid"]
        await s.api.post(
            f"/syncs/{sync_id}/flows/{flow_id}/executions/{child}/result",
            json={"status": "success"},
        )
        assert (await s.api.post(url, json={"consumers": [c1]})).status_code == 200


async def test_trigger_targets_must_have_the_flow_enabled(database: Any) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, (c1, c2) = await _setup(s, 2, enabled=1)
        url = f"/syncs/{sync_id}/flows/{flow_id}/event"
        not_enabled = await s.api.post(url, json={"consumers": [c1, c2]})
        assert not_enabled.status_code == 400
        assert not_enabled.json()["error_code"] == "ERROR_FLOW_NOT_ENABLED"
        assert (await s.api.post(url, json={"consumers": [str(uuid.uuid4())]})).status_code == 404
        assert (await s.api.post(url, json={"consumers": ["nope"]})).status_code == 404
        assert (
            await s.api.post(f"/syncs/{sync_id}/flows/{uuid.uuid4()}/event", json={})
        ).status_code == 404
        await s.api.post(f"/consumers/{c1}/syncs/{sync_id}/flows/{flow_id}/disable")
        nobody = await s.api.post(url, json={})
        assert nobody.status_code == 400
        assert (await s.api.get(f"/syncs/{sync_id}/executions")).json()["total"] == 0


async def test_http_runner_posts_the_context_and_takes_the_answer(
    database: Any, receiver: Any
) -> None:
    receiver.default = Reply(
        200, json.dumps({"status": "success", "message": "3 invoices"}).encode()
    )
    async with frozen_app(database) as s:
        execution = {"type": "code", "data": None, "url": f"{receiver.url}/run"}
        sync_id, flow_id, (c1,) = await _setup(s, 1, execution)
        answer = await s.api.post(
            f"/syncs/{sync_id}/flows/{flow_id}/event", json={"data": {"since": "2026-11-01"}}
        )
        assert answer.status_code == 200
        parent = answer.json()["data"]["executionid"]
        child = answer.json()["data"]["executions"][0]["executionid"]
        await drain()

        (request,) = receiver.requests
        assert request.path == "/run"
        assert request.headers["X-Hookline-Execution-Id"] == child
        assert json.loads(request.body) == {
            "executionid": child,
            "parentexecutionid": parent,
            "flowid": flow_id,
            "syncid": sync_id,
            "consumerid": c1,
            "data": {
                "is_preview": False,
                "force_restart": False,
                "start_date": None,
                "end_date": None,
                "force_from_date": None,
                "import_mode": None,
                "since": "2026-11-01",
            },
        }
        assert _executed(await flow_events(s.rt, s.api.account_id)) == [
            flow_event(
                s.api,
                "account.flow.executed",
                c1,
                START,
                flowid=flow_id,
                syncid=sync_id,
                status="success",
                executionid=child,
                parentexecutionid=parent,
            )
        ]
        base = f"/syncs/{sync_id}/flows/{flow_id}/executions"
        assert (await s.api.get(f"{base}/{parent}")).json()["status"] == "success"


async def _run_once(s: Setup, url: str) -> tuple[str, str, str, str]:
    execution = {"type": "code", "data": None, "url": url}
    sync_id, flow_id, (c1,) = await _setup(s, 1, execution)
    answer = await s.api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
    assert answer.status_code == 200
    await drain()
    child = answer.json()["data"]["executions"][0]["executionid"]
    return sync_id, flow_id, c1, child


async def _child_row(s: Setup, child: str) -> Any:
    from sqlalchemy import select

    from hookline.store.tables import executions

    async with s.rt.db.read() as conn:
        return (
            await conn.execute(select(executions).where(executions.c.id == uuid.UUID(child)))
        ).one()


async def test_http_runner_error_answer_is_an_error_with_its_message(
    database: Any, receiver: Any
) -> None:
    receiver.default = Reply(200, b'{"status":"error","message":"no VAT","error_code":"E_VAT"}')
    async with frozen_app(database) as s:
        _, _, c1, child = await _run_once(s, receiver.url)
        row = await _child_row(s, child)
        assert (row.status, row.message, row.error_code) == ("error", "no VAT", "E_VAT")
        (event,) = _executed(await flow_events(s.rt, s.api.account_id))
        assert (event["status"], event["executionid"], event["consumerid"]) == ("error", child, c1)


async def test_http_runner_server_error_and_bad_answers_end_as_error(
    database: Any, receiver: Any
) -> None:
    receiver.replies = [Reply(500, b"boom"), Reply(200, b"not json")]
    async with frozen_app(database) as s:
        _, _, _, first = await _run_once(s, receiver.url)
        row = await _child_row(s, first)
        assert (row.status, row.error_code, row.message) == (
            "error",
            "ERROR_RUNNER_HTTP_STATUS",
            "Runner endpoint answered HTTP 500",
        )
        second_sync = await new_sync(
            s.api,
            flow_body("other", execution={"type": "code", "data": None, "url": receiver.url}),
            name="Second",
        )
        consumer = await new_consumer(s.api, "Another")
        await enable(s.api, consumer, second_sync["syncid"], second_sync["flows"][0]["id"])
        answer = await s.api.post(
            f"/syncs/{second_sync['syncid']}/flows/{second_sync['flows'][0]['id']}/event", json={}
        )
        await drain()
        row = await _child_row(s, answer.json()["data"]["executions"][0]["executionid"])
        assert (row.status, row.error_code) == ("error", "ERROR_RUNNER_INVALID_ANSWER")


async def test_http_runner_timeout_ends_as_error(database: Any, receiver: Any) -> None:
    receiver.default = Reply(200, b'{"status":"success"}', delay=2.0)
    async with frozen_app(database, execution_timeout_seconds=0.3) as s:
        _, _, _, child = await _run_once(s, receiver.url)
        row = await _child_row(s, child)
        assert (row.status, row.error_code) == ("error", "ERROR_EXECUTION_TIMEOUT")
        assert len(receiver.requests) == 1


async def test_http_runner_refuses_blocked_addresses(database: Any, receiver: Any) -> None:
    async with frozen_app(database, outbound_allowlist=[]) as s:
        _, _, _, child = await _run_once(s, receiver.url)
        row = await _child_row(s, child)
        assert (row.status, row.error_code) == ("error", "ERROR_RUNNER_BLOCKED_ADDRESS")
        assert receiver.requests == []


async def test_http_runner_202_waits_for_the_reported_result(database: Any, receiver: Any) -> None:
    receiver.default = Reply(202, b"")
    async with frozen_app(database) as s:
        sync_id, flow_id, _, child = await _run_once(s, receiver.url)
        assert (await _child_row(s, child)).status == "running"
        reported = await s.api.post(
            f"/syncs/{sync_id}/flows/{flow_id}/executions/{child}/result",
            json={"status": "success", "message": "done later"},
        )
        assert reported.status_code == 200
        row = await _child_row(s, child)
        assert (row.status, row.message) == ("success", "done later")
        assert len(_executed(await flow_events(s.rt, s.api.account_id))) == 1


async def test_http_runner_signs_like_a_webhook_when_the_flow_has_a_secret(
    database: Any, receiver: Any
) -> None:
    receiver.default = Reply(200, b'{"status":"success"}')
    async with frozen_app(database) as s:
        execution = {
            "type": "code",
            "data": None,
            "url": receiver.url,
            "signingsecret": "runner-secret",
        }
        sync_id, flow_id, _ = await _setup(s, 1, execution)
        read = (await s.api.get(f"/syncs/{sync_id}")).json()["flows"][0]["execution"]
        assert read == {
            "type": "code",
            "data": None,
            "runner": None,
            "url": receiver.url,
            "timeout_seconds": None,
            "signed": True,
        }
        # Re-posting the flow without the secret keeps it (it cannot be read back).
        reposted = await s.api.post(
            f"/syncs/{sync_id}/flows",
            json=flow_body(execution={"type": "code", "data": None, "url": receiver.url}),
        )
        assert reposted.json()["execution"]["signed"] is True
        answer = await s.api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
        child = answer.json()["data"]["executions"][0]["executionid"]
        await drain()

        (request,) = receiver.requests
        expected = hmac.new(b"runner-secret", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Chift-Signature"] == expected
        assert request.headers["webhook-id"] == child
        assert request.headers["webhook-timestamp"] == str(int(START.timestamp()))
        assert b"runner-secret" not in request.body
        assert (await _child_row(s, child)).status == "success"

        removed = await s.api.post(
            f"/syncs/{sync_id}/flows",
            json=flow_body(
                execution={"type": "code", "data": None, "url": receiver.url, "signingsecret": ""}
            ),
        )
        assert removed.json()["execution"]["signed"] is False


async def test_concurrent_triggers_start_one_execution_per_consumer(database: Any) -> None:
    async with frozen_app(database) as s:
        sync_id, flow_id, (c1,) = await _setup(s, 1)
        other = Runtime.create(database.settings(), clock=s.clock)

        async def attempt(rt: Runtime) -> str:
            try:
                async with rt.db.transaction() as conn:
                    await trigger_flow(
                        conn,
                        account_id=uuid.UUID(s.api.account_id),
                        sync_id=uuid.UUID(sync_id),
                        flow_id=uuid.UUID(flow_id),
                        consumer_ids=None,
                        data={},
                        trigger="event",
                        now=s.clock.now(),
                        timeout_seconds=60,
                        run_lease_seconds=60,
                    )
                return "started"
            except Conflict:
                return "409"

        try:
            results = await asyncio.gather(*(attempt(rt) for rt in (s.rt, other, s.rt, other)))
        finally:
            await other.db.dispose()
        assert sorted(results) == ["409", "409", "409", "started"]
        mine = (
            await s.api.get(f"/consumers/{c1}/syncs/{sync_id}/flows/{flow_id}/executions")
        ).json()
        assert [item["status"] for item in mine] == ["running"]


async def test_a_run_whose_process_stopped_is_resumed_once_with_its_execution_id(
    database: Any, receiver: Any
) -> None:
    from datetime import timedelta

    from hookline.clock import FrozenClock
    from hookline.platform.scheduler import resume_runs

    receiver.default = Reply(200, b'{"status":"success"}')
    async with frozen_app(database, run_lease_seconds=60) as s:
        execution = {"type": "code", "data": None, "url": f"{receiver.url}/run"}
        sync_id, flow_id, (c1,) = await _setup(s, 1, execution)
        # A process commits the execution, then dies before its runner sends anything.
        async with s.rt.db.transaction() as conn:
            triggered = await trigger_flow(
                conn,
                account_id=uuid.UUID(s.api.account_id),
                sync_id=uuid.UUID(sync_id),
                flow_id=uuid.UUID(flow_id),
                consumer_ids=None,
                data=None,
                trigger="event",
                now=START,
                timeout_seconds=300,
                run_lease_seconds=60,
            )
        assert triggered is not None
        child = triggered.jobs[0].execution_id
        assert await resume_runs(s.rt, START + timedelta(seconds=59)) == []  # lease still live

        later = START + timedelta(seconds=61)
        other = Runtime.create(database.settings(run_lease_seconds=60), clock=FrozenClock(later))
        try:  # two processes notice at once: one takes it over
            taken = await asyncio.gather(resume_runs(s.rt, later), resume_runs(other, later))
        finally:
            await drain()
            await other.db.dispose()
        assert sorted(taken, key=len) == [[], [child]]
        (request,) = receiver.requests
        assert request.headers["X-Hookline-Execution-Id"] == str(child)
        assert (await _child_row(s, str(child))).status == "success"
        (event,) = _executed(await flow_events(s.rt, s.api.account_id))
        assert (event["executionid"], event["consumerid"], event["status"]) == (
            str(child),
            c1,
            "success",
        )
        assert await resume_runs(s.rt, START + timedelta(seconds=200)) == []  # finished


async def test_runs_that_happen_elsewhere_are_never_resumed(database: Any, receiver: Any) -> None:
    """A 202 answer hands the run to the account's service, and the external runner never
    ran anything here: neither is started again when the lease time passes."""
    from datetime import timedelta

    from hookline.platform.scheduler import resume_runs

    receiver.default = Reply(202, b"")
    async with frozen_app(database, run_lease_seconds=60) as s:
        _, _, _, handed_off = await _run_once(s, receiver.url)
        assert (await _child_row(s, handed_off)).run_lease_until is None
        sync = await new_sync(s.api, flow_body("external"), name="External")
        consumer = await new_consumer(s.api, "Ext")
        await enable(s.api, consumer, sync["syncid"], sync["flows"][0]["id"])
        answer = await s.api.post(
            f"/syncs/{sync['syncid']}/flows/{sync['flows'][0]['id']}/event", json={}
        )
        external = answer.json()["data"]["executions"][0]["executionid"]
        assert (await _child_row(s, external)).run_lease_until is None
        assert await resume_runs(s.rt, START + timedelta(seconds=120)) == []
        assert len(receiver.requests) == 1
