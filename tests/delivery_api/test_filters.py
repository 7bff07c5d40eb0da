"""Payload filters: checked when an event fans out (every fan-out path), validated on save."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.store.tables import deliveries
from tests.delivery_api.control_helpers import frozen_stack, worker_of
from tests.delivery_api.helpers import CONSUMER, assert_error, connection_event, create_webhook

OTHER_CONSUMER = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e60"
ISSUE = "account.issue.updated"


def issue_event(**extra: object) -> dict:
    return {
        "event": ISSUE,
        "consumerid": CONSUMER,
        "issue_id": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e73",
        "connectionid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e6f",
        "syncid": None,
        "error_code": "ERROR_AUTH",
        "issue_status": "open",
        "message": "refused",
        "context": None,
        "occurrences": 2,
        **extra,
    }


async def _receivers(runtime, event_id: str) -> set[uuid.UUID]:
    async with runtime.db.read() as conn:
        rows = await conn.execute(
            select(deliveries.c.webhook_id).where(deliveries.c.event_id == uuid.UUID(event_id))
        )
        return {row[0] for row in rows}


async def test_a_filtered_out_event_creates_no_delivery(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        api = stack.api
        everything = await create_webhook(api, url=f"{receiver.url}/all")
        inactive = await create_webhook(
            api,
            url=f"{receiver.url}/inactive",
            filter={"status": ["inactive"], "consumerid": [CONSUMER, OTHER_CONSUMER]},
        )
        assert inactive["filter"] == {
            "status": ["inactive"],
            "consumerid": [CONSUMER, OTHER_CONSUMER],
        }
        all_id, inactive_id = uuid.UUID(everything["webhookid"]), uuid.UUID(inactive["webhookid"])

        active = await stack.post_event(connection_event(status="active"))
        assert active["deliveries"] == 1
        assert await _receivers(stack.runtime, active["eventid"]) == {all_id}
        matching = await stack.post_event(connection_event(status="inactive"))
        assert matching["deliveries"] == 2
        assert await _receivers(stack.runtime, matching["eventid"]) == {all_id, inactive_id}
        third = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e61"
        stranger = await stack.post_event(connection_event(status="inactive", consumerid=third))
        assert await _receivers(stack.runtime, stranger["eventid"]) == {all_id}

        async with worker_of(stack.runtime) as worker:
            await receiver.wait_for(4)
            await worker.wait_recorded(4)
        paths = sorted(request.path for request in receiver.requests)
        assert paths == ["/all", "/all", "/all", "/inactive"]

        # Changed (PATCH), then removed with {}: every event is delivered again.
        path = f"/webhooks/{inactive['webhookid']}"
        changed = await api.patch(path, json={"filter": {"status": ["active"]}})
        assert changed.json()["filter"] == {"status": ["active"]}
        now_active = await stack.post_event(connection_event(status="active"))
        assert await _receivers(stack.runtime, now_active["eventid"]) == {all_id, inactive_id}
        assert (await api.patch(path, json={"filter": {}})).json()["filter"] is None
        removed = await stack.post_event(connection_event(status="inactive", consumerid=third))
        assert await _receivers(stack.runtime, removed["eventid"]) == {all_id, inactive_id}


async def test_integer_and_null_values_match_in_sql(database) -> None:
    """The general fan-out path (an event emitted inside a platform transaction)."""
    async with frozen_stack(database) as stack:
        hook = await create_webhook(
            stack.api, event=ISSUE, filter={"occurrences": [2, 3], "syncid": [None]}
        )
        hook_id = uuid.UUID(hook["webhookid"])
        account = uuid.UUID(stack.api.account_id)
        cases = [
            ({"occurrences": 2, "syncid": None}, True),
            ({"occurrences": 3, "syncid": None}, True),
            ({"occurrences": 4, "syncid": None}, False),
            ({"occurrences": 2, "syncid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e70"}, False),
        ]
        for extra, delivered in cases:
            fields = {
                k: v for k, v in issue_event(**extra).items() if k not in {"event", "consumerid"}
            }
            async with stack.runtime.db.transaction() as conn:
                emitted = await emit_draft(
                    conn,
                    EventDraft(
                        account_id=account,
                        event=ISSUE,
                        consumer_id=uuid.UUID(CONSUMER),
                        fields=fields,
                        now=stack.clock.now(),
                    ),
                )
            assert (emitted.delivery_ids != ()) is delivered, extra
            got = await _receivers(stack.runtime, str(emitted.id))
            assert got == ({hook_id} if delivered else set())
        # The standalone path (POST /events) agrees.
        posted = await stack.post_event(issue_event(occurrences=3))
        assert posted["deliveries"] == 1
        posted = await stack.post_event(issue_event(occurrences=5))
        assert posted["deliveries"] == 0


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ({"colour": ["red"]}, "Unknown field 'colour'"),
        ({"status": "inactive"}, "must be a list"),
        ({"status": []}, "must be a list"),
        ({"status": ["maybe"]}, "accepts a value no"),
        ({"consumerid": ["not-a-uuid"]}, "accepts a value no"),
        ({"status": [{"nested": 1}]}, "must be strings"),
        ({"created": [1.5]}, "must be strings"),
    ],
)
async def test_bad_filters_are_refused_with_400(database, filter_, message) -> None:
    async with frozen_stack(database) as stack:
        response = await stack.api.post(
            "/webhooks",
            json={
                "event": "account.connection.created",
                "url": "https://example.com/f",
                "filter": filter_,
            },
        )
        body = assert_error(response, 400, "ERROR_INVALID_FILTER")
        assert message in body["message"]
        assert (await stack.api.get("/webhooks")).json() == []
        hook = await create_webhook(stack.api)
        patched = await stack.api.patch(f"/webhooks/{hook['webhookid']}", json={"filter": filter_})
        assert_error(patched, 400, "ERROR_INVALID_FILTER")
        assert (await stack.api.get(f"/webhooks/{hook['webhookid']}")).json()["filter"] is None


async def test_pos_events_match_both_the_integration_and_the_filter(database) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(
            stack.api,
            event="pos.order.updated",
            integrationid=2001,
            filter={"location_id": ["loc-1"], "customer_id": [None, "cust-9"]},
        )
        account = uuid.UUID(stack.api.account_id)
        order = {
            "order_id": "ord-1",
            "device_id": None,
            "customer_id": None,
            "location_id": "loc-1",
            "updated_at": "2026-11-26T10:15:00Z",
        }
        cases = [
            (2001, {}, True),
            (2001, {"customer_id": "cust-9"}, True),
            (2001, {"location_id": "loc-2"}, False),
            (2002, {}, False),  # another integration: never, filter or not
        ]
        for integration, extra, delivered in cases:
            async with stack.runtime.db.transaction() as conn:
                emitted = await emit_draft(
                    conn,
                    EventDraft(
                        account_id=account,
                        event="pos.order.updated",
                        consumer_id=uuid.UUID(CONSUMER),
                        fields={**order, **extra},
                        now=stack.clock.now(),
                        integration_id=integration,
                    ),
                )
            got = await _receivers(stack.runtime, str(emitted.id))
            assert got == ({uuid.UUID(hook["webhookid"])} if delivered else set()), extra
