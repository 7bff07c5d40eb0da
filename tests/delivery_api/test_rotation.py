"""Secret rotation with an overlap, against a real receiver and the real worker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from datetime import datetime

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from hookline.delivery.webhooks import expire_previous_secrets, run_secret_expiry
from hookline.store.tables import webhooks
from hookline.verify import InvalidSignature, verify, verify_standard
from tests.delivery_api.control_helpers import OLD_SECRET, frozen_stack, worker_of
from tests.delivery_api.helpers import assert_error, connection_event, create_webhook


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def _v1(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The expected ``v1`` entry, computed here from the spec (no hookline code)."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def test_both_signatures_verify_during_the_overlap_and_only_the_new_one_after(
    database, receiver
) -> None:
    async with frozen_stack(database) as stack:
        api, clock, runtime = stack.api, stack.clock, stack.runtime
        hook = await create_webhook(api, url=f"{receiver.url}/hook", signingsecret=OLD_SECRET)
        rotated = await api.post(
            f"/webhooks/{hook['webhookid']}/rotate-secret", json={"overlap_seconds": 3600}
        )
        assert rotated.status_code == 200, rotated.text
        answer = rotated.json()
        new = answer["signingsecret"]
        assert new.startswith("whsec_") and len(_standard_key(new)) == 24
        until = datetime.fromisoformat(answer["rotation_overlap_until"])
        assert int(until.timestamp()) == int(clock.timestamp()) + 3600
        # The generated secret is shown once: the webhook never returns it again.
        again = await api.get(f"/webhooks/{hook['webhookid']}")
        assert new not in again.text and "signingsecret" not in again.json()
        assert again.json()["rotation_overlap_until"] == answer["rotation_overlap_until"]

        async with worker_of(runtime) as worker:
            await stack.post_event(connection_event())
            [during] = await receiver.wait_for(1)
            await worker.wait_recorded(1)
            signatures = during.headers["webhook-signature"].split(" ")
            assert signatures == [
                _v1(new, during.headers, during.body),
                _v1(OLD_SECRET, during.headers, during.body),
            ]
            # A receiver on either secret accepts it (the standardwebhooks library).
            StandardWebhook(new).verify(during.body, during.headers)
            StandardWebhook(OLD_SECRET).verify(during.body, during.headers)
            assert (
                during.headers["X-Chift-Signature"]
                == hmac.new(new.encode(), during.body, hashlib.sha256).hexdigest()
            )
            verify(during.body, during.headers, [OLD_SECRET, new], now=clock.timestamp())

            # One second after the overlap: the worker's cached key stops using the old secret.
            await stack.advance(3601)
            await stack.post_event(connection_event(status="inactive"))
            requests = await receiver.wait_for(2)
            await worker.wait_recorded(2)
        after = requests[1]
        assert after.headers["webhook-signature"] == _v1(new, after.headers, after.body)
        now = clock.timestamp()
        verify(after.body, after.headers, new, now=now)
        with pytest.raises(InvalidSignature):
            verify_standard(after.body, after.headers, OLD_SECRET, now=now)
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(OLD_SECRET).verify(after.body, after.headers)

        # The old secret is forgotten by the expiry pass: only the new secret is stored.
        async with runtime.db.transaction() as conn:
            assert await expire_previous_secrets(conn, runtime.secret_box, clock.now()) == 1
        async with runtime.db.read() as conn:
            sealed = (await conn.execute(select(webhooks.c.secret_encrypted))).scalar_one()
        assert runtime.secret_box.decrypt(sealed) == new
        shown = (await api.get(f"/webhooks/{hook['webhookid']}")).json()
        assert shown["rotation_overlap_until"] is None


async def test_a_given_secret_with_no_overlap_replaces_the_old_one_at_once(
    database, receiver
) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(stack.api, url=f"{receiver.url}/hook", signingsecret=OLD_SECRET)
        rotated = await stack.api.post(
            f"/webhooks/{hook['webhookid']}/rotate-secret",
            json={"signingsecret": "brand-new-secret", "overlap_seconds": 0},
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["signingsecret"] is None  # the caller's own secret is not echoed
        assert rotated.json()["rotation_overlap_until"] is None
        async with worker_of(stack.runtime) as worker:
            await stack.post_event(connection_event())
            [got] = await receiver.wait_for(1)
            await worker.wait_recorded(1)
        assert got.headers["webhook-signature"].count("v1,") == 1
        verify(got.body, got.headers, "brand-new-secret", now=stack.clock.timestamp())


async def test_the_expired_previous_secret_is_dropped_when_the_webhook_changes(database) -> None:
    async with frozen_stack(database) as stack:
        api, runtime = stack.api, stack.runtime
        hook = await create_webhook(api, signingsecret=OLD_SECRET)
        path = f"/webhooks/{hook['webhookid']}"
        assert (await api.post(f"{path}/rotate-secret", json={"overlap_seconds": 60})).is_success
        await stack.advance(61)
        changed = await api.patch(path, json={"url": "https://example.com/other"})
        assert changed.json()["rotation_overlap_until"] is None
        async with runtime.db.read() as conn:
            sealed = (await conn.execute(select(webhooks.c.secret_encrypted))).scalar_one()
        assert OLD_SECRET not in runtime.secret_box.decrypt(sealed)


async def test_rotation_rejects_bad_input(database) -> None:
    async with frozen_stack(database) as stack:
        api = stack.api
        hook = await create_webhook(api, signingsecret=OLD_SECRET)
        path = f"/webhooks/{hook['webhookid']}/rotate-secret"
        for overlap in (-1, 31 * 86400):
            assert_error(
                await api.post(path, json={"overlap_seconds": overlap}),
                400,
                "ERROR_INVALID_OVERLAP",
            )
        too_long = await api.post(path, json={"signingsecret": "x" * 101})
        assert too_long.status_code == 422 and "x" * 101 not in too_long.text
        assert_error(
            await api.post(path, json={"signingsecret": "hookline-keys:1:{}"}),
            400,
            "ERROR_INVALID_SECRET",
        )
        unknown = "/webhooks/00000000-0000-0000-0000-000000000000/rotate-secret"
        assert_error(await api.post(unknown, json={}), 404, "ERROR_WEBHOOK_NOT_FOUND")
        # Nothing was half-written: the webhook still signs with its one secret.
        async with stack.runtime.db.read() as conn:
            sealed = (await conn.execute(select(webhooks.c.secret_encrypted))).scalar_one()
        assert stack.runtime.secret_box.decrypt(sealed) == OLD_SECRET


async def test_the_secret_expiry_service_forgets_ended_overlaps_only(database) -> None:
    async with frozen_stack(database) as stack:
        api, runtime = stack.api, stack.runtime
        ended = await create_webhook(api, signingsecret=OLD_SECRET)
        running = await create_webhook(
            api, url="https://example.com/still", signingsecret="still-old"
        )
        for hook, overlap in ((ended, 60), (running, 3600)):
            response = await api.post(
                f"/webhooks/{hook['webhookid']}/rotate-secret", json={"overlap_seconds": overlap}
            )
            assert response.status_code == 200, response.text
        await stack.advance(61)
        stop, ticked = asyncio.Event(), asyncio.Event()
        service = asyncio.create_task(run_secret_expiry(runtime, stop, ticked=ticked.set))
        await asyncio.wait_for(ticked.wait(), timeout=10)
        stop.set()
        await asyncio.wait_for(service, timeout=10)
        async with runtime.db.read() as conn:
            rows = (await conn.execute(select(webhooks.c.url, webhooks.c.secret_encrypted))).all()
        stored = {url: runtime.secret_box.decrypt(sealed) for url, sealed in rows}
        assert OLD_SECRET not in stored[ended["url"]]
        assert stored[ended["url"]].startswith("whsec_")  # the new secret, plain again
        assert "still-old" in stored[running["url"]]  # its overlap runs for another hour
        listed = {item["url"]: item for item in (await api.get("/webhooks")).json()}
        assert listed[ended["url"]]["rotation_overlap_until"] is None
        assert listed[running["url"]]["rotation_overlap_until"] is not None
