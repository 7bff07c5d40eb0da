"""Consumers, connections, issues and the deliveries chart, as the dashboard shows them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from hookline.delivery.stats import attempts_over_time
from hookline.delivery.webhooks import create_webhook
from hookline.ids import new_id
from hookline.platform.agents import agent_heartbeat
from hookline.platform.connections import create_connection
from hookline.platform.consumers import create_consumer
from hookline.platform.issues import raise_issue
from hookline.runtime import Runtime
from hookline.store.tables import webhook_logs
from hookline.ui.chart import attempts_chart


async def seed_consumer(runtime: Runtime, account_id: uuid.UUID, name: str) -> dict:
    """A consumer with an API connection and a local-agent connection that pinged once."""
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        consumer = await create_consumer(
            conn, account_id, name=name, now=now, email=f"{name}@example.com"
        )
        odoo = await create_connection(
            conn,
            runtime.secret_box,
            account_id=account_id,
            consumer_id=consumer.id,
            integration_id=1001,
            name=f"{name} books",
            credentials={
                "url": "https://odoo.example",
                "database": "db",
                "username": "u",
                "api_key": "k",
            },
            now=now,
        )
        agent = await create_connection(
            conn,
            runtime.secret_box,
            account_id=account_id,
            consumer_id=consumer.id,
            integration_id=2003,
            name=f"{name} till",
            credentials={"store_code": "S1"},
            now=now,
        )
        issue = await raise_issue(
            conn,
            account_id=account_id,
            consumer_id=consumer.id,
            connection_id=odoo.connection.id,
            error_code="ERROR_AUTH",
            message=f"{name}: credentials refused",
            now=now,
        )
        await raise_issue(
            conn,
            account_id=account_id,
            consumer_id=consumer.id,
            connection_id=odoo.connection.id,
            error_code="ERROR_AUTH",
            message=f"{name}: credentials refused",
            now=now,
        )
    assert agent.agent_token is not None
    return {
        "consumer": consumer,
        "odoo": odoo.connection,
        "agent": agent.connection,
        "agent_token": agent.agent_token,
        "issue": issue.issue,
    }


async def test_consumers_page_shows_connections_and_agent_status(dashboards, runtime) -> None:
    board = await dashboards()
    other = await dashboards()
    mine = await seed_consumer(runtime, board.key.account_id, "acme")
    theirs = await seed_consumer(runtime, other.key.account_id, "globex")
    page = await board.http.get("/ui/consumers")
    assert page.status_code == 200
    assert str(mine["consumer"].id) in page.text
    assert "acme books" in page.text
    assert "globex" not in page.text
    assert str(theirs["consumer"].id) not in page.text
    agents = re.findall(r'<span class="badge status-(\w+) agent">', page.text)
    assert agents == ["down"]  # never pinged yet
    assert "never pinged" in page.text
    async with runtime.db.transaction() as conn:
        await agent_heartbeat(conn, mine["agent_token"], now=runtime.clock.now())
    page = await board.http.get("/ui/consumers")
    assert re.findall(r'<span class="badge status-(\w+) agent">', page.text) == ["up"]
    assert "last ping" in page.text
    searched = await board.http.get("/ui/consumers?q=nobody")
    assert "No consumers match" in searched.text


async def test_issues_page_lists_only_the_accounts_open_issues(dashboards, runtime) -> None:
    board = await dashboards()
    other = await dashboards()
    assert "No open issues." in (await board.http.get("/ui/issues")).text
    mine = await seed_consumer(runtime, board.key.account_id, "acme")
    await seed_consumer(runtime, other.key.account_id, "globex")
    page = await board.http.get("/ui/issues")
    assert page.status_code == 200
    ids = re.findall(r'data-issue-id="([0-9a-f-]+)"', page.text)
    assert ids == [str(mine["issue"].id)]
    assert "acme: credentials refused" in page.text
    assert "globex" not in page.text
    assert re.findall(r'class="mono occurrences">(\d+)<', page.text) == ["2"]


async def insert_log(runtime: Runtime, webhook, *, at: datetime, outcome: str, status: int) -> None:
    async with runtime.db.transaction() as conn:
        await conn.execute(
            insert(webhook_logs).values(
                id=new_id(),
                webhook_id=webhook.id,
                delivery_id=new_id(),
                event_id=new_id(),
                account_id=webhook.account_id,
                event=webhook.event,
                url=webhook.url,
                integration_id=None,
                http_status=status,
                attempt=1,
                duration_ms=12.5,
                outcome=outcome,
                error_class=None,
                response_excerpt="ok",
                next_attempt_at=None,
                created_at=at,
            )
        )


async def test_attempts_are_counted_per_hour_and_outcome(dashboards, runtime) -> None:
    board = await dashboards()
    other = await dashboards()
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    hooks = []
    for owner in (board, other):
        async with runtime.db.transaction() as conn:
            hooks.append(
                await create_webhook(
                    conn,
                    runtime.secret_box,
                    account_id=owner.key.account_id,
                    event="account.connection.up",
                    url="http://127.0.0.1:9/x",
                    now=now,
                )
            )
    mine, theirs = hooks
    for minutes, outcome, status in (
        (5, "delivered", 200),
        (10, "delivered", 204),
        (20, "retry", 503),
        (70, "failed", 400),
        (75, "disabled", 410),
        (23 * 60 + 50, "delivered", 200),
        (24 * 60 + 10, "delivered", 200),
    ):
        await insert_log(
            runtime, mine, at=now - timedelta(minutes=minutes), outcome=outcome, status=status
        )
    await insert_log(runtime, theirs, at=now - timedelta(minutes=5), outcome="failed", status=500)
    async with runtime.db.read() as conn:
        buckets = await attempts_over_time(conn, board.key.account_id, now=now)
    assert len(buckets) == 24
    assert buckets[0].start == now - timedelta(hours=24)
    assert [(b.delivered, b.retry, b.failed) for b in buckets if b.total] == [
        (1, 0, 0),
        (0, 0, 2),
        (2, 1, 0),
    ]
    assert buckets[0].delivered == 1  # 23h50 ago; 24h10 ago is outside the window
    assert (buckets[22].failed, buckets[23].delivered, buckets[23].retry) == (2, 2, 1)
    svg = attempts_chart(buckets)
    counts = re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', str(svg))
    assert counts == [("delivered", "1"), ("failed", "2"), ("delivered", "2"), ("retry", "1")]
    async with runtime.db.read() as conn:
        theirs_buckets = await attempts_over_time(conn, other.key.account_id, now=now)
    assert sum(b.failed for b in theirs_buckets) == 1
    assert sum(b.total for b in theirs_buckets) == 1


async def test_overview_totals_come_from_the_accounts_logs(dashboards, runtime) -> None:
    board = await dashboards()
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        webhook = await create_webhook(
            conn,
            runtime.secret_box,
            account_id=board.key.account_id,
            event="account.connection.up",
            url="http://127.0.0.1:9/x",
            now=now,
        )
    await insert_log(
        runtime, webhook, at=now - timedelta(minutes=1), outcome="delivered", status=200
    )
    await insert_log(runtime, webhook, at=now - timedelta(minutes=2), outcome="retry", status=500)
    page = await board.http.get("/ui/")
    totals = dict(re.findall(r'data-total="(\w+)">(\d+)<', page.text))
    assert totals == {"delivered": "1", "retry": "1", "failed": "0"}
    assert page.text.count('<rect class="bar') == 2
    assert 'id="webhook-count">1<' in page.text
    assert 'id="open-issues">0 open<' in page.text
