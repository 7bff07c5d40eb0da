"""Syncs and flows over HTTP, consumers joining syncs, and flow enabled/disabled events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from hookline.platform.cron import split
from hookline.store.tables import flows
from tests.platform.syncs_support import (
    START,
    enable,
    flow_body,
    flow_event,
    flow_events,
    frozen_app,
    new_consumer,
    new_sync,
)


async def test_create_list_and_get_syncs_with_their_flows(database: Any) -> None:
    async with frozen_app(database) as s:
        timer = flow_body(
            "nightly", triggers=[{"id": "t-night", "type": "timer", "cronschedules": ["0 2 * * *"]}]
        )
        created = await s.api.post(
            "/syncs",
            json={
                "name": "Sales to accounting",
                "config": {"datalayer": True},
                "connections": [{"one_api": 3, "connection_type": 2}],
                "mappings": [{"name": "vat"}],
                "flows": [flow_body(), timer],
            },
        )
        assert created.status_code == 200, created.text
        sync = created.json()
        sync_id = sync["syncid"]
        assert uuid.UUID(sync_id).version == 7
        flow_ids = [flow["id"] for flow in sync["flows"]]
        assert sync == {
            "name": "Sales to accounting",
            "config": {"datalayer": True},
            "connections": [
                {"one_api": 3, "connection_type": 2, "display_order": 0, "display_hidden": False}
            ],
            "mappings": [
                {
                    "name": "vat",
                    "display_order": 0,
                    "challenge_question": None,
                    "conditions": None,
                    "sub_mappings": [],
                }
            ],
            "syncid": sync_id,
            "consumers": [],
            "flows": [
                {
                    "name": "invoices",
                    "id": flow_ids[0],
                    "execution": {
                        "type": "code",
                        "data": {"code": "print(1)"},
                        "runner": None,
                        "url": None,
                        "timeout_seconds": None,
                        "signed": False,
                    },
                    "config": {"datastores": []},
                    "triggers": [
                        {
                            "id": "trigger-1",
                            "type": "event",
                            "cronschedules": None,
                            "visible": True,
                            "definitionFields": None,
                            "options": None,
                            "priority": "NORMAL",
                        }
                    ],
                },
                {
                    "name": "nightly",
                    "id": flow_ids[1],
                    "execution": {
                        "type": "code",
                        "data": {"code": "print(1)"},
                        "runner": None,
                        "url": None,
                        "timeout_seconds": None,
                        "signed": False,
                    },
                    "config": {"datastores": []},
                    "triggers": [
                        {
                            "id": "t-night",
                            "type": "timer",
                            "cronschedules": ["0 2 * * *"],
                            "visible": True,
                            "definitionFields": None,
                            "options": None,
                            "priority": "NORMAL",
                        }
                    ],
                },
            ],
        }
        assert (await s.api.get(f"/syncs/{sync_id}")).json() == sync
        assert (await s.api.get("/syncs")).json() == [sync]
        assert (await s.api.get("/syncs/not-a-uuid")).status_code == 404
        assert (await s.api.get(f"/syncs/{uuid.uuid4()}")).status_code == 404

        async with s.rt.db.read() as conn:
            row = (
                await conn.execute(
                    select(flows.c.cron, flows.c.next_run_at).where(
                        flows.c.id == uuid.UUID(flow_ids[1])
                    )
                )
            ).one()
        assert split(row.cron) == ["0 2 * * *"]
        assert row.next_run_at == START.replace(day=16, hour=2, minute=0, second=0)


async def test_posting_a_flow_with_an_existing_name_updates_it_and_keeps_its_id(
    database: Any,
) -> None:
    async with frozen_app(database) as s:
        sync = await new_sync(s.api)
        first = await s.api.post(f"/syncs/{sync['syncid']}/flows", json=flow_body("orders"))
        assert first.status_code == 200
        flow_id = first.json()["id"]
        second = await s.api.post(
            f"/syncs/{sync['syncid']}/flows",
            json=flow_body(
                "orders",
                execution={
                    "type": "module",
                    "data": {"name": "chain"},
                    "url": "https://runner.example/run",
                },
            ),
        )
        assert second.status_code == 200
        assert second.json()["id"] == flow_id
        assert second.json()["execution"] == {
            "type": "module",
            "data": {"name": "chain"},
            "runner": None,
            "url": "https://runner.example/run",
            "timeout_seconds": None,
            "signed": False,
        }
        listed = (await s.api.get(f"/syncs/{sync['syncid']}")).json()["flows"]
        assert [(flow["id"], flow["name"]) for flow in listed] == [(flow_id, "orders")]

        deleted = await s.api.delete(f"/syncs/{sync['syncid']}/flows/{flow_id}")
        assert deleted.status_code == 204
        assert (await s.api.get(f"/syncs/{sync['syncid']}")).json()["flows"] == []
        again = await s.api.delete(f"/syncs/{sync['syncid']}/flows/{flow_id}")
        assert again.status_code == 404


async def test_flow_definitions_are_validated(database: Any) -> None:
    async with frozen_app(database) as s:
        sync = await new_sync(s.api)
        url = f"/syncs/{sync['syncid']}/flows"
        bad_cron = await s.api.post(
            url,
            json=flow_body(triggers=[{"id": "t", "type": "timer", "cronschedules": ["every day"]}]),
        )
        assert bad_cron.status_code == 400
        assert bad_cron.json()["error_code"] == "ERROR_INVALID_CRON"
        no_schedule = await s.api.post(url, json=flow_body(triggers=[{"id": "t", "type": "timer"}]))
        assert no_schedule.status_code == 400
        http_without_url = await s.api.post(
            url, json=flow_body(execution={"type": "code", "data": None, "runner": "http"})
        )
        assert http_without_url.status_code == 400
        assert http_without_url.json()["error_code"] == "ERROR_INVALID_RUNNER"
        unknown_runner = await s.api.post(
            url, json=flow_body(execution={"type": "code", "data": None, "runner": "lambda"})
        )
        assert unknown_runner.status_code == 400
        duplicate_trigger = await s.api.post(
            url,
            json=flow_body(triggers=[{"id": "t", "type": "event"}, {"id": "t", "type": "event"}]),
        )
        assert duplicate_trigger.status_code == 400
        bad_type = await s.api.post(url, json=flow_body(triggers=[{"id": "t", "type": "hook"}]))
        assert bad_type.status_code == 422
        assert (await s.api.get(f"/syncs/{sync['syncid']}")).json()["flows"] == []


async def test_enable_and_disable_emit_once_per_real_change(database: Any) -> None:
    async with frozen_app(database) as s:
        consumer = await new_consumer(s.api)
        sync = await new_sync(s.api, flow_body())
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]

        joined = await s.api.post(
            f"/consumers/{consumer}/syncs", json={"syncid": sync_id, "link_metadata": {"crm": "42"}}
        )
        assert joined.status_code == 200
        assert joined.json() == {
            "url": f"http://hookline.test/consumers/{consumer}/syncs/{sync_id}"
        }
        before = (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).json()
        assert before == {
            "syncid": sync_id,
            "sync_name": "Sales",
            "status": "inactive",
            "status_details": "No flow is enabled for this consumer",
            "enabled": False,
            "link_createdon": "2026-01-15T12:00:30Z",
            "link_mappings": None,
            "skip_mappings": None,
            "link_metadata": {"crm": "42"},
            "link_presync": None,
            "enabled_flows": [],
        }

        first = await enable(s.api, consumer, sync_id, flow_id, data={"journal": "VT"})
        assert first.status_code == 200
        assert first.json() == {
            "name": "invoices",
            "id": flow_id,
            "config": {"datastores": []},
            "values": {"journal": "VT"},
            "enabled_on": "2026-01-15T12:00:30Z",
            "trigger": {"id": "trigger-1", "type": "event", "cronschedule": None},
        }
        s.clock.advance(60)
        again = await enable(s.api, consumer, sync_id, flow_id, data={"journal": "VT2"})
        assert again.status_code == 200
        assert again.json()["enabled_on"] == "2026-01-15T12:00:30Z"  # still enabled since
        after = (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).json()
        assert after["status"] == "active"
        assert after["enabled"] is True
        assert after["status_details"] is None
        assert [item["values"] for item in after["enabled_flows"]] == [{"journal": "VT2"}]

        disabled = await s.api.post(
            f"/consumers/{consumer}/syncs/{sync_id}/flows/{flow_id}/disable"
        )
        assert disabled.status_code == 204
        twice = await s.api.post(f"/consumers/{consumer}/syncs/{sync_id}/flows/{flow_id}/disable")
        assert twice.status_code == 204
        final = (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).json()
        assert final["status"] == "inactive"
        assert final["enabled_flows"] == []

        fields = {"flowid": flow_id, "syncid": sync_id}
        assert await flow_events(s.rt, s.api.account_id) == [
            flow_event(s.api, "account.flow.enabled", consumer, START, **fields),
            flow_event(s.api, "account.flow.disabled", consumer, START.replace(minute=1), **fields),
        ]
        assert (await s.api.get("/syncs")).json()[0]["consumers"] == [consumer]


async def test_deleting_a_consumer_disables_its_enabled_flows(database: Any) -> None:
    async with frozen_app(database) as s:
        consumer = await new_consumer(s.api)
        bystander = await new_consumer(s.api, "Other")
        sync = await new_sync(s.api, flow_body(), flow_body("orders"))
        sync_id = sync["syncid"]
        invoices, orders = (flow["id"] for flow in sync["flows"])
        for flow_id in (invoices, orders):
            assert (await enable(s.api, consumer, sync_id, flow_id)).status_code == 200
        assert (await enable(s.api, bystander, sync_id, invoices)).status_code == 200
        assert (
            await s.api.post(f"/consumers/{consumer}/syncs/{sync_id}/flows/{orders}/disable")
        ).status_code == 204
        s.clock.advance(60)

        assert (await s.api.delete(f"/consumers/{consumer}")).status_code == 204

        after = [
            body
            for body in await flow_events(s.rt, s.api.account_id)
            if body["created"] == int(START.timestamp()) + 60
        ]
        assert after == [
            flow_event(
                s.api,
                "account.flow.disabled",
                consumer,
                START.replace(minute=1),
                flowid=invoices,
                syncid=sync_id,
            )
        ]
        still = (await s.api.get(f"/consumers/{bystander}/syncs/{sync_id}")).json()
        assert [item["id"] for item in still["enabled_flows"]] == [invoices]


async def test_enabling_joins_the_sync_and_validates_the_trigger(database: Any) -> None:
    async with frozen_app(database) as s:
        consumer = await new_consumer(s.api)
        sync = await new_sync(
            s.api,
            flow_body(triggers=[{"id": "hourly", "type": "timer", "cronschedules": ["0 * * * *"]}]),
        )
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        assert (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).status_code == 404

        wrong = await enable(s.api, consumer, sync_id, flow_id, triggerid="nope")
        assert wrong.status_code == 400
        assert wrong.json()["error_code"] == "ERROR_INVALID_TRIGGER"
        bad_cron = await enable(s.api, consumer, sync_id, flow_id, cronschedule="soon")
        assert bad_cron.status_code == 400
        assert await flow_events(s.rt, s.api.account_id) == []

        # Left at its default, the trigger is the flow's first one.
        ok = await enable(s.api, consumer, sync_id, flow_id)
        assert ok.json()["trigger"] == {
            "id": "hourly",
            "type": "timer",
            "cronschedule": "0 * * * *",
        }
        joined = await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")
        assert joined.status_code == 200
        assert joined.json()["status"] == "active"

        patched = await s.api.patch(
            f"/consumers/{consumer}/syncs/{sync_id}/flows/{flow_id}", json={"data": {"limit": 5}}
        )
        assert patched.status_code == 204
        mappings = [
            {
                "name": "vat",
                "values": [{"source_id": "21", "target_id": "451"}],
                "hidden_source_ids": [],
                "sub_mapping_name": "VAT codes",
            }
        ]
        mapped = await s.api.patch(f"/consumers/{consumer}/syncs/{sync_id}", json=mappings)
        assert mapped.status_code == 204
        view = (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).json()
        assert view["enabled_flows"][0]["values"] == {"limit": 5}
        assert view["link_mappings"] == [
            {
                "name": "vat",
                "display_order": 0,
                "challenge_question": None,
                "conditions": None,
                "values": [{"source_id": "21", "target_id": "451"}],
                "hidden_source_ids": [],
                "sub_mapping_name": "VAT codes",
                "sub_mapping_description": None,
            }
        ]
        assert len(await flow_events(s.rt, s.api.account_id)) == 1


async def test_another_accounts_ids_answer_404(database: Any) -> None:
    async with frozen_app(database) as s:
        consumer = await new_consumer(s.api)
        sync = await new_sync(s.api, flow_body())
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        other = await s.other_account()
        other_consumer = await new_consumer(other, "Theirs")

        assert (await other.get(f"/syncs/{sync_id}")).status_code == 404
        assert (await other.get("/syncs")).json() == []
        assert (await other.post(f"/syncs/{sync_id}/flows", json=flow_body("x"))).status_code == 404
        assert (await other.delete(f"/syncs/{sync_id}/flows/{flow_id}")).status_code == 404
        # their consumer in my sync, and my consumer through their token
        assert (await enable(other, other_consumer, sync_id, flow_id)).status_code == 404
        assert (await enable(other, consumer, sync_id, flow_id)).status_code == 404
        assert (
            await other.post(f"/consumers/{other_consumer}/syncs", json={"syncid": sync_id})
        ).status_code == 404
        assert (await enable(s.api, other_consumer, sync_id, flow_id)).status_code == 404
        assert (
            await other.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})
        ).status_code == 404
        assert (await other.get(f"/syncs/{sync_id}/executions")).status_code == 404
        assert await flow_events(s.rt, s.api.account_id) == []
        assert len((await s.api.get(f"/syncs/{sync_id}")).json()["flows"]) == 1


async def test_deleting_a_flow_ends_its_runs_and_disables_it_for_its_consumers(
    database: Any,
) -> None:
    async with frozen_app(database) as s:
        consumer = await new_consumer(s.api)
        sync = await new_sync(s.api, flow_body())
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        await enable(s.api, consumer, sync_id, flow_id)
        triggered = (await s.api.post(f"/syncs/{sync_id}/flows/{flow_id}/event", json={})).json()[
            "data"
        ]
        child = triggered["executions"][0]["executionid"]
        s.clock.advance(5)
        assert (await s.api.delete(f"/syncs/{sync_id}/flows/{flow_id}")).status_code == 204
        later = START.replace(second=35)
        fields = {"flowid": flow_id, "syncid": sync_id}
        assert await flow_events(s.rt, s.api.account_id) == [
            flow_event(s.api, "account.flow.enabled", consumer, START, **fields),
            flow_event(
                s.api,
                "account.flow.executed",
                consumer,
                later,
                **fields,
                status="error",
                executionid=child,
                parentexecutionid=triggered["executionid"],
            ),
            flow_event(s.api, "account.flow.disabled", consumer, later, **fields),
        ]
        view = (await s.api.get(f"/consumers/{consumer}/syncs/{sync_id}")).json()
        assert (view["status"], view["enabled_flows"]) == ("inactive", [])
        assert (await s.api.get(f"/syncs/{sync_id}/executions")).json()["total"] == 0
