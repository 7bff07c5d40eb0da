"""Debugging a webhook in a real headless Chromium against a real ``hookline serve``.

One healthy and one failing webhook receive a real event; the test then walks every page a
developer uses to debug it: health on the overview and the list (failing first), the Events
search, an event's page with a resend to one webhook, an attempt's page, recover's preview and
"send retrying now", open and closed issues and an issue's page, the event-types catalog, the
styled 404, and the layout at phone width (390 px: nothing wider than the screen).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookline.bootstrap import prepare_database
from hookline.platform.issues import close_issues
from hookline.runtime import Runtime
from tests.receiver import Received, Reply
from tests.ui.test_browser import BACKENDS, CHROMIUM_ARGS, SECRET, chromium_path, create_account
from tests.ui.test_dashboard_pages import seed_consumer

__all__ = ["chromium_path"]  # the fixture, shared with test_browser

pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)

CONSUMER = "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70"
CONNECTION = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f"
PHONE = {"width": 390, "height": 844}


def respond(received: Received) -> Reply:
    if received.path.startswith("/bad"):  # down, and asks for a long pause: stays retrying
        return Reply(503, b"upstream down", headers={"Retry-After": "3600"})
    return Reply(200, b'{"ok":true}', headers={"X-Receiver": "yes"})


async def until(page: Any, check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Reload until ``check`` holds: the worker runs in the server's process, so there is no
    event to await from here."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await page.wait_for_timeout(150)
        await page.reload()


async def fits_the_screen(page: Any) -> bool:
    width = await page.evaluate("document.documentElement.scrollWidth")
    return bool(width <= PHONE["width"])


async def test_find_an_event_see_every_attempt_and_fix_a_failing_webhook(
    chromium_path: str, database: Any, live_server: Any, receiver: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    receiver.responder = respond
    server = live_server()
    key = await asyncio.to_thread(create_account, database.env())
    # Issues live in the same database: seed one open and one closed through the use cases
    # (before the webhooks exist: seeding creates connections, whose events are not wanted).
    runtime = Runtime.create(database.settings())
    await prepare_database(runtime)
    try:
        account_id = uuid.UUID(key["accountId"])
        open_one = await seed_consumer(runtime, account_id, "acme")
        closed_one = await seed_consumer(runtime, account_id, "globex")
        async with runtime.db.transaction() as conn:
            await close_issues(
                conn,
                consumer_id=closed_one["consumer"].id,
                connection_id=closed_one["odoo"].id,
                now=runtime.clock.now(),
            )
    finally:
        await runtime.db.dispose()

    async with httpx.AsyncClient(base_url=server.url) as http:
        token = (await http.post("/token", json=key)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        good = (
            await http.post(
                "/webhooks",
                headers=auth,
                json={
                    "event": "account.connection.created",
                    "url": f"{receiver.url}/good",
                    "signingsecret": SECRET,
                },
            )
        ).json()
        bad = (
            await http.post(
                "/webhooks",
                headers=auth,
                json={"event": "account.connection.created", "url": f"{receiver.url}/bad"},
            )
        ).json()
        sent = await http.post(
            "/events",
            headers=auth,
            json={
                "event": "account.connection.created",
                "consumerid": CONSUMER,
                "connectionid": CONNECTION,
                "status": "active",
            },
        )
        assert sent.json()["deliveries"] == 2
    event_id = sent.json()["eventid"]
    first = await receiver.wait_for(2)
    good_request = next(r for r in first if r.path == "/good")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{server.url}/ui/login")
            await page.fill("input[name=accountId]", key["accountId"])
            await page.fill("input[name=clientId]", key["clientId"])
            await page.fill("input[name=clientSecret]", key["clientSecret"])
            await page.click("button:has-text('Sign in')")
            await page.wait_for_url(f"{server.url}/ui/")

            # Overview and list: the failing webhook comes first, with its numbers.
            health_rows = page.locator("#health tbody tr")

            async def failing_on_top() -> bool:
                return await health_rows.count() == 2 and (
                    await health_rows.first.get_attribute("data-health") == "failing"
                )

            await until(page, failing_on_top, "the failing webhook on the overview")
            assert await health_rows.first.get_attribute("data-webhook-id") == bad["webhookid"]
            assert "0 %" in await health_rows.first.locator(".success-rate").inner_text()
            assert "never" in await health_rows.first.locator(".last-success").inner_text()
            assert "UTC" in await health_rows.first.inner_text()  # failing since … UTC
            second = health_rows.nth(1)
            assert await second.get_attribute("data-health") == "healthy"
            assert "100 %" in await second.locator(".success-rate").inner_text()
            assert "UTC" in await second.locator(".last-success").inner_text()
            await page.click("nav >> text=Webhooks")
            rows = page.locator("#webhooks tbody tr")
            assert await rows.first.get_attribute("data-webhook-id") == bad["webhookid"]
            assert await rows.first.get_attribute("data-health") == "failing"

            # Events: search by consumer, open the event.
            await page.click("nav >> text=Events")
            await page.wait_for_url(f"{server.url}/ui/events")
            await page.fill("#event-search input[name=consumerid]", CONSUMER)
            await page.select_option(
                "#event-search select[name=event]", "account.connection.created"
            )
            await page.click("#event-search button[type=submit]")
            found = page.locator("#events tbody tr")
            assert await found.count() == 1
            assert await found.first.get_attribute("data-event-id") == event_id
            await page.fill("#event-search input[name=consumerid]", CONNECTION)  # no such one
            await page.click("#event-search button[type=submit]")
            assert "No events match this search" in await page.inner_text("main")
            await page.goto(f"{server.url}/ui/events")
            await page.fill("#event-search input[name=eventid]", event_id)
            await page.click("#event-search button[type=submit]")
            await page.wait_for_url(f"{server.url}/ui/events/{event_id}")
            body = json.loads(await page.inner_text("#event-body"))
            assert body == sent.json()["body"]
            assert (await page.text_content("#event-exact") or "").encode() == good_request.body
            good_card = page.locator(f".delivery[data-webhook-id='{good['webhookid']}']")
            bad_card = page.locator(f".delivery[data-webhook-id='{bad['webhookid']}']")
            assert "delivered" in await good_card.inner_text()
            assert "pending" in await bad_card.inner_text()
            assert "next attempt" in await bad_card.inner_text()
            assert await bad_card.locator(".http-status").first.inner_text() == "503"

            # The attempt, whole.
            await good_card.locator("a:has-text('details')").first.click()
            await page.wait_for_url("**/logs/*")
            assert await page.inner_text("#attempt-status") == "200"
            sent_headers = await page.inner_text("#request-headers")
            for name in ("webhook-id", "webhook-signature", "X-Chift-Signature"):
                assert f"{name}\t{good_request.headers[name]}" in sent_headers
            assert "X-Receiver\tyes" in await page.inner_text("#response-headers")
            assert await page.inner_text("#response-body") == '{"ok":true}'
            assert json.loads(await page.inner_text("#request-body")) == body
            assert "Nothing planned" in await page.inner_text("#schedule")
            await page.go_back()
            await bad_card.locator("a:has-text('details')").first.click()
            await page.wait_for_url("**/logs/*")
            assert await page.inner_text("#attempt-error") == "HTTP503"
            assert "attempt 2 at" in await page.inner_text("#schedule")
            assert "Retry-After\t3600" in await page.inner_text("#response-headers")

            # Resend to the healthy webhook only: same webhook-id.
            await page.goto(f"{server.url}/ui/events/{event_id}")
            await good_card.locator("button:has-text('Resend to this webhook')").click()
            await page.wait_for_url("**notice=resent")
            again = await receiver.wait_for(3)
            assert again[2].path == "/good"
            assert again[2].headers["webhook-id"] == good_request.headers["webhook-id"]

            # Recover explains first; the retrying delivery is sent now on request.
            await page.goto(f"{server.url}/ui/webhooks/{bad['webhookid']}")
            assert "failing" in await page.inner_text("#webhook-health")
            await page.click("#recover-start button[type=submit]")
            await page.wait_for_url("**/recover?since=*")
            assert await page.inner_text("#failed-count") == "0"
            assert await page.inner_text("#retrying-count") == "1"
            assert await page.locator("#recover button").is_disabled()
            await page.click("#send-retrying button")
            await page.wait_for_url("**notice=sentnow**")
            assert "1 retrying delivery(ies) will be sent now" in await page.inner_text(".notice")
            latest = await receiver.wait_for(4)
            assert latest[3].path == "/bad"

            # Issues: open and closed lists, a page per issue.
            await page.click("nav >> text=Issues")
            issue_rows = page.locator("#issues tbody tr")
            assert await issue_rows.count() == 1
            assert await issue_rows.first.get_attribute("data-issue-id") == str(
                open_one["issue"].id
            )
            await page.click("#tab-closed")
            assert await issue_rows.count() == 1
            assert await issue_rows.first.get_attribute("data-issue-id") == str(
                closed_one["issue"].id
            )
            await issue_rows.first.locator("a").click()
            await page.wait_for_url(f"**/ui/issues/{closed_one['issue'].id}")
            assert await page.inner_text("#issue-status") == "auto_closed"
            assert await page.inner_text("#issue-occurrences") == "2"
            assert await page.locator("#occurrences tbody tr").count() == 2
            assert "globex" in await page.inner_text("#issue-consumer")
            assert "globex books" in await page.inner_text("#issue-connection")

            # The catalog, and the styled 404.
            await page.click("nav >> text=Event types")
            assert await page.locator("code.event-name").count() == 13
            missing = await page.goto(f"{server.url}/ui/no/such/page")
            assert missing is not None and missing.status == 404
            assert "Page not found" in await page.inner_text("h1")
            assert await page.locator("nav").count() == 1  # still inside the dashboard
            missing = await page.goto(f"{server.url}/ui/events/not-an-id")
            assert missing is not None and missing.status == 404
            assert "Page not found" in await page.inner_text("h1")

            # Phone width: every page fits; screenshots kept for a look.
            shots = Path(os.environ.get("HOOKLINE_SCREENSHOTS", str(tmp_path)))
            phone = await browser.new_page(viewport=PHONE)
            await phone.context.add_cookies(await page.context.cookies())
            for name, path in (
                ("overview", "/ui/"),
                ("webhooks", "/ui/webhooks"),
                ("webhook", f"/ui/webhooks/{bad['webhookid']}"),
                ("events", "/ui/events"),
                ("event", f"/ui/events/{event_id}"),
                ("issues", "/ui/issues?status=closed"),
                ("issue", f"/ui/issues/{closed_one['issue'].id}"),
                ("types", "/ui/event-types"),
            ):
                await phone.goto(f"{server.url}{path}")
                assert await phone.locator("nav").count() == 1, name
                await phone.screenshot(path=str(shots / f"phone-{name}.png"), full_page=True)
                assert await fits_the_screen(phone), f"{name} is wider than a phone"
        finally:
            await browser.close()
