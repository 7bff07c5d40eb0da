"""POST /events to a real receiver through the real delivery worker, then the attempt log,
a manual redelivery (same ``webhook-id``) and a recover of a failed delivery."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid

from sqlalchemy import select

from hookline.delivery.worker import DeliveryWorker
from hookline.store.tables import deliveries, events
from tests.delivery_api.helpers import connection_event, create_webhook, runtime_of
from tests.receiver import Reply
from tests.support import ApiClient


async def test_event_redelivery_and_recover_reach_a_real_receiver(api: ApiClient, receiver) -> None:
    runtime = runtime_of(api)
    worker = DeliveryWorker(runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        receiver.replies = [Reply(200), Reply(200), Reply(400, b"bad")]
        hook = await create_webhook(api, url=f"{receiver.url}/hook", signingsecret="e2e-secret")
        webhook_id = hook["webhookid"]
        sent = await api.post("/events", json=connection_event())
        assert sent.json()["deliveries"] == 1
        [first] = await receiver.wait_for(1)
        await worker.wait_recorded(1)
        async with runtime.db.read() as conn:
            payload = (await conn.execute(select(events.c.payload))).scalar_one()
        assert first.path == "/hook"
        assert first.body == bytes(payload)
        assert json.loads(first.body) == sent.json()["body"]
        assert (
            first.headers["X-Chift-Signature"]
            == hmac.new(b"e2e-secret", first.body, hashlib.sha256).hexdigest()
        )
        [log] = (await api.get(f"/webhooks/{webhook_id}/logs")).json()
        assert (log["httpstatus"], log["outcome"], log["attempt"]) == (200, "delivered", 1)
        assert log["event_id"] == sent.json()["eventid"]

        redelivered = await api.post(f"/webhooks/{webhook_id}/logs/{log['webhooklogid']}/redeliver")
        assert redelivered.status_code == 202
        assert redelivered.json()["delivery_id"] == log["delivery_id"]
        requests = await receiver.wait_for(2)
        assert requests[1].body == first.body
        assert requests[1].headers["webhook-id"] == first.headers["webhook-id"]
        await worker.wait_recorded(2)

        failing = await api.post("/events", json=connection_event(status="inactive"))
        requests = await receiver.wait_for(3)
        await worker.wait_recorded(3)
        async with runtime.db.read() as conn:
            status = (
                await conn.execute(
                    select(deliveries.c.status).where(
                        deliveries.c.event_id == uuid.UUID(failing.json()["eventid"])
                    )
                )
            ).scalar_one()
        assert status == "failed"
        failed_logs = (
            await api.get(f"/webhooks/{webhook_id}/logs", params={"status": "failed"})
        ).json()
        assert [(item["httpstatus"], item["response_excerpt"]) for item in failed_logs] == [
            (400, "bad")
        ]
        recovered = await api.post(
            f"/webhooks/{webhook_id}/recover", json={"since": "2020-01-01T00:00:00Z"}
        )
        assert recovered.json() == {"count": 1}
        requests = await receiver.wait_for(4)
        assert requests[3].headers["webhook-id"] == requests[2].headers["webhook-id"]
        assert requests[3].body == requests[2].body
        await worker.wait_recorded(4)
        logs = (await api.get(f"/webhooks/{webhook_id}/logs")).json()
        assert [(item["httpstatus"], item["outcome"]) for item in logs] == [
            (200, "delivered"),
            (400, "failed"),
            (200, "delivered"),
            (200, "delivered"),
        ]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
