"""The dashboard in a real headless Chromium against a real ``hookline serve``.

Signs in, creates a webhook to a loopback receiver, triggers an event, sees the request with
status 200, redelivers it and checks that the receiver got it again with the same webhook-id.
Runs on SQLite by default; set ``HOOKLINE_BROWSER_BACKENDS=sqlite,postgresql`` for both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookline.verify import verify

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BACKENDS = os.environ.get("HOOKLINE_BROWSER_BACKENDS", "sqlite").split(",")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

pytestmark = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip(
            f"SKIPPING BROWSER TEST — {CHROMIUM} is missing (install Debian's "
            "`chromium` package; the test never downloads a browser)"
        )
    return str(CHROMIUM)


def create_account(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "hookline.cli.main", "accounts", "create", "browser", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


async def wait_for_rows(page: Any, count: int, timeout: float = 20.0) -> Any:
    """Reload until the requests table has ``count`` rows: the log is written by the server's
    worker, another process, so there is no event to await from here."""
    rows = page.locator("#requests tbody tr")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await rows.count() < count:
        if loop.time() > deadline:
            raise AssertionError(f"expected {count} request rows, page shows {await rows.count()}")
        await page.wait_for_timeout(150)
        await page.reload()
    return rows


async def test_sign_in_create_trigger_see_and_redeliver(
    chromium_path: str,
    database: Any,
    live_server: Any,
    receiver: Any,
) -> None:
    from playwright.async_api import async_playwright

    server = live_server()
    key = await asyncio.to_thread(create_account, database.env())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{server.url}/ui/")
            assert page.url == f"{server.url}/ui/login"
            await page.fill("input[name=accountId]", key["accountId"])
            await page.fill("input[name=clientId]", key["clientId"])
            await page.fill("input[name=clientSecret]", key["clientSecret"])
            await page.click("button:has-text('Sign in')")
            await page.wait_for_url(f"{server.url}/ui/")
            assert "Delivery attempts, last 24 hours" in await page.inner_text("main")

            await page.click("nav >> text=Webhooks")
            await page.wait_for_url(f"{server.url}/ui/webhooks")
            await page.select_option(
                "#create-webhook select[name=event]", "account.connection.created"
            )
            await page.fill("#create-webhook input[name=url]", f"{receiver.url}/hook")
            await page.fill("#create-webhook input[name=signingsecret]", SECRET)
            await page.click("#create-webhook button[type=submit]")
            await page.wait_for_url("**/ui/webhooks/*?notice=created")
            assert await page.inner_text("#webhook-status") == "active"
            assert "No requests yet" in await page.inner_text("main")

            async with httpx.AsyncClient(base_url=server.url) as http:
                token = (await http.post("/token", json=key)).json()["access_token"]
                consumer = "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70"
                sent = await http.post(
                    "/events",
                    headers={"Authorization": f"Bearer {token}"},
                    json={
                        "event": "account.connection.created",
                        "consumerid": consumer,
                        "connectionid": "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f",
                        "status": "active",
                    },
                )
                assert sent.status_code == 202, sent.text
                assert sent.json()["deliveries"] == 1
            first = (await receiver.wait_for(1))[0]
            verify(first.body, first.headers, SECRET)
            assert json.loads(first.body)["event"] == "account.connection.created"

            rows = await wait_for_rows(page, 1)
            row = rows.first
            assert await row.locator(".http-status").inner_text() == "200"
            assert "account.connection.created" in await row.inner_text()
            assert "delivered" in await row.inner_text()

            await row.locator("button:has-text('Redeliver')").click()
            await page.wait_for_url("**notice=redelivered")
            assert "Redelivery queued" in await page.inner_text(".notice")
            requests = await receiver.wait_for(2)
            assert len(requests) == 2
            second = requests[1]
            assert second.headers["webhook-id"] == first.headers["webhook-id"]
            assert second.body == first.body
            verify(second.body, second.headers, SECRET)

            rows = await wait_for_rows(page, 2)
            statuses = [await rows.nth(i).locator(".http-status").inner_text() for i in range(2)]
            assert statuses == ["200", "200"]
            delivery_ids = {await rows.nth(i).get_attribute("data-delivery-id") for i in range(2)}
            assert len(delivery_ids) == 1

            await page.click("button:has-text('Sign out')")
            await page.wait_for_url("**/ui/login?notice=signedout")
            await page.goto(f"{server.url}/ui/webhooks")
            assert page.url == f"{server.url}/ui/login"
        finally:
            await browser.close()
