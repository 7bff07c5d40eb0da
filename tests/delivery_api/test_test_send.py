"""POST /webhooks/{id}/test: the example body, signed, through the SSRF guard, logged."""

from __future__ import annotations

import json

from hookline.catalog import BY_NAME, example_for
from hookline.verify import verify
from tests.delivery_api.control_helpers import OLD_SECRET, frozen_stack
from tests.delivery_api.helpers import assert_error, create_webhook, second_account
from tests.receiver import Reply


async def test_a_test_send_is_signed_marked_answered_and_logged(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        api = stack.api
        hook = await create_webhook(
            api,
            event="account.flow.executed",
            url=f"{receiver.url}/probe",
            signingsecret=OLD_SECRET,
        )
        sent = await api.post(f"/webhooks/{hook['webhookid']}/test")
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        [got] = receiver.requests  # answered only after the receiver replied
        assert got.path == "/probe" and got.headers["x-hookline-test"] == "1"
        verify(got.body, got.headers, OLD_SECRET, now=stack.clock.timestamp())
        assert got.headers["webhook-id"] == answer["message_id"]
        expected = example_for(BY_NAME["account.flow.executed"])
        body = json.loads(got.body)
        assert body == {
            **expected,
            "accountid": api.account_id,
            "created": int(stack.clock.timestamp()),
        }
        assert (answer["httpstatus"], answer["outcome"], answer["response_excerpt"]) == (
            200,
            "delivered",
            "ok",
        )
        assert answer["error_class"] is None and answer["duration_ms"] >= 0
        [log] = (await api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
        assert log["webhooklogid"] == answer["webhooklogid"]
        assert (log["attempt"], log["httpstatus"], log["outcome"]) == (0, 200, "delivered")
        assert log["delivery_id"] == answer["message_id"]


async def test_a_failing_receiver_is_reported_not_retried(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        receiver.replies = [Reply(500, b"nope")]
        hook = await create_webhook(stack.api, url=f"{receiver.url}/down")
        answer = (await stack.api.post(f"/webhooks/{hook['webhookid']}/test")).json()
        assert (answer["httpstatus"], answer["outcome"], answer["error_class"]) == (
            500,
            "failed",
            "HTTP500",
        )
        assert answer["response_excerpt"] == "nope"
        assert "webhook-signature" not in receiver.requests[0].headers  # no secret: unsigned
        [log] = (await stack.api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
        assert (log["outcome"], log["httpstatus"], log["next_attempt_at"]) == ("failed", 500, None)


async def test_the_ssrf_guard_applies_to_test_sends(database) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(stack.api, url="http://169.254.169.254/latest/meta-data")
        answer = (await stack.api.post(f"/webhooks/{hook['webhookid']}/test")).json()
        assert (answer["httpstatus"], answer["outcome"], answer["error_class"]) == (
            None,
            "failed",
            "BlockedAddress",
        )
        [log] = (await stack.api.get(f"/webhooks/{hook['webhookid']}/logs")).json()
        assert (log["httpstatus"], log["error_class"]) == (0, "BlockedAddress")


async def test_unknown_or_foreign_webhooks_answer_404(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(stack.api, url=f"{receiver.url}/mine")
        other = await second_account(stack.api)
        assert_error(
            await other.post(f"/webhooks/{hook['webhookid']}/test"), 404, "ERROR_WEBHOOK_NOT_FOUND"
        )
        assert_error(
            await stack.api.post("/webhooks/00000000-0000-0000-0000-000000000000/test"),
            404,
            "ERROR_WEBHOOK_NOT_FOUND",
        )
        assert receiver.requests == []
