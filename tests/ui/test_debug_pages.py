"""The debugging pages over HTTP, on both backends: events, attempts, health, recover preview,
issues and the 404 page, each scoped to the signed-in account."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.delivery.health import HealthState, webhooks_health
from hookline.ids import new_id
from hookline.platform.issues import close_issues
from hookline.store.tables import deliveries, delivery_queue, webhook_logs, webhooks
from tests.ui.test_dashboard_http import create_via_form
from tests.ui.test_dashboard_pages import seed_consumer

CONSUMER = uuid.UUID("0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70")


async def emit_event(runtime, account_id, *, consumer=CONSUMER, event="account.connection.up"):
    async with runtime.db.transaction() as conn:
        return await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event=event,
                consumer_id=consumer,
                fields={"connectionid": uuid.uuid4()},
                now=runtime.clock.now(),
            ),
        )


async def add_log(runtime, webhook_id, delivery_id, event_id, account_id, *, at, outcome, status):
    log_id = new_id()
    async with runtime.db.transaction() as conn:
        await conn.execute(
            insert(webhook_logs).values(
                id=log_id,
                webhook_id=webhook_id,
                delivery_id=delivery_id,
                event_id=event_id,
                account_id=account_id,
                event="account.connection.up",
                url="http://127.0.0.1:9/x",
                integration_id=None,
                http_status=status,
                attempt=1,
                duration_ms=3.0,
                outcome=outcome,
                error_class=None if status == 200 else f"HTTP{status}",
                response_excerpt="r",
                next_attempt_at=None,
                created_at=at,
                request_headers="webhook-id: abc\r\nContent-Length: 2",
                response_headers="Server: test",
            )
        )
    return log_id


def event_ids(html: str) -> list[str]:
    return re.findall(r'data-event-id="([0-9a-f-]+)"', html)


async def test_events_search_and_an_events_page_are_the_accounts_own(dashboards, runtime) -> None:
    alice, bob = await dashboards(), await dashboards()
    await create_via_form(alice, event="account.connection.up")
    mine = await emit_event(runtime, alice.key.account_id)
    other_consumer = await emit_event(runtime, alice.key.account_id, consumer=uuid.uuid4())
    await emit_event(runtime, bob.key.account_id)
    page = await alice.http.get("/ui/events")
    assert event_ids(page.text) == [str(other_consumer.id), str(mine.id)]
    searched = await alice.http.get(f"/ui/events?consumerid={CONSUMER}")
    assert event_ids(searched.text) == [str(mine.id)]
    typed = await alice.http.get("/ui/events?event=account.flow.enabled")
    assert event_ids(typed.text) == [] and "No events match this search" in typed.text
    jump = await alice.http.get(f"/ui/events?eventid={mine.id}")
    assert (jump.status_code, jump.headers["location"]) == (303, f"/ui/events/{mine.id}")
    bad = await alice.http.get("/ui/events?consumerid=nope&since=yesterday")
    assert bad.status_code == 400
    assert "consumer id must be an id" in bad.text and "from time must look like" in bad.text
    event_page = await alice.http.get(f"/ui/events/{mine.id}")
    assert event_page.status_code == 200
    assert "Not attempted yet." in event_page.text
    assert "Resend to this webhook" not in event_page.text  # nothing to resend yet
    assert event_ids((await bob.http.get("/ui/events")).text) != [str(mine.id)]
    foreign = await bob.http.get(f"/ui/events/{mine.id}")
    assert foreign.status_code == 404 and "Page not found" in foreign.text


async def test_resend_and_attempt_pages_need_an_attempt_of_the_account(dashboards, runtime) -> None:
    alice, bob = await dashboards(), await dashboards()
    webhook_id = uuid.UUID(await create_via_form(alice, event="account.connection.up"))
    event = await emit_event(runtime, alice.key.account_id)
    [delivery_id] = event.delivery_ids
    resend = f"/ui/events/{event.id}/deliveries/{delivery_id}/resend"
    refused = await alice.post(resend)
    assert refused.status_code == 400 and "not been attempted yet" in refused.text
    log_id = await add_log(
        runtime,
        webhook_id,
        delivery_id,
        event.id,
        alice.key.account_id,
        at=runtime.clock.now(),
        outcome="failed",
        status=400,
    )
    async with runtime.db.transaction() as conn:  # as the worker leaves a final failure
        await conn.execute(delete(delivery_queue))
        await conn.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="failed")
        )
    attempt = await alice.http.get(f"/ui/webhooks/{webhook_id}/logs/{log_id}")
    assert attempt.status_code == 200
    assert "webhook-id" in attempt.text and "Server" in attempt.text
    assert "HTTP400" in attempt.text and "was final" in attempt.text
    assert (await bob.post(resend)).status_code == 404
    assert (await bob.http.get(f"/ui/webhooks/{webhook_id}/logs/{log_id}")).status_code == 404
    done = await alice.post(resend)
    assert done.headers["location"] == f"/ui/events/{event.id}?notice=resent"
    async with runtime.db.read() as conn:
        queued = (await conn.execute(select(delivery_queue.c.delivery_id))).scalars().all()
    assert queued == [delivery_id]


async def test_recover_counts_failed_and_retrying_first_and_can_send_retrying_now(
    dashboards, runtime
) -> None:
    board = await dashboards()
    webhook_id = await create_via_form(board, event="account.connection.up")
    now = runtime.clock.now()
    failed, retrying, fresh = [await emit_event(runtime, board.key.account_id) for _ in range(3)]
    later = now + timedelta(hours=2)
    async with runtime.db.transaction() as conn:
        await conn.execute(delete(delivery_queue).where(delivery_queue.c.event_id == failed.id))
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.event_id == failed.id)
            .values(status="failed", attempts=3)
        )
        await conn.execute(
            update(deliveries).where(deliveries.c.event_id == retrying.id).values(attempts=1)
        )
        await conn.execute(
            update(delivery_queue)
            .where(delivery_queue.c.event_id == retrying.id)
            .values(available_at=later, attempt=1)
        )
    since = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    page = await board.http.get(f"/ui/webhooks/{webhook_id}/recover?since={since}")
    assert page.status_code == 200
    assert re.search(r'id="failed-count">1<', page.text)
    assert re.search(r'id="retrying-count">1<', page.text)
    future = (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    page = await board.http.get(f"/ui/webhooks/{webhook_id}/recover?since={future}")
    assert re.search(r'id="failed-count">0<', page.text)
    assert "Send retrying now” is probably what you want" in page.text
    sent = await board.post(f"/ui/webhooks/{webhook_id}/send-retrying")
    assert sent.headers["location"] == f"/ui/webhooks/{webhook_id}?notice=sentnow&count=1"
    async with runtime.db.read() as conn:
        rows = await conn.execute(select(delivery_queue.c.event_id, delivery_queue.c.available_at))
        due = {row.event_id: row.available_at for row in rows}
    assert due[retrying.id] <= runtime.clock.now()
    assert set(due) == {retrying.id, fresh.id}  # the failed one waits for recover
    other = await dashboards()
    assert (await other.http.get(f"/ui/webhooks/{webhook_id}/recover")).status_code == 404
    assert (await other.post(f"/ui/webhooks/{webhook_id}/send-retrying")).status_code == 404


async def test_health_counts_24_hours_and_lists_failing_webhooks_first(dashboards, runtime) -> None:
    board = await dashboards()
    account = board.key.account_id
    healthy = uuid.UUID(await create_via_form(board, url="http://127.0.0.1:9/ok"))
    failing = uuid.UUID(await create_via_form(board, url="http://127.0.0.1:9/failing"))
    disabled = uuid.UUID(await create_via_form(board, url="http://127.0.0.1:9/gone"))
    idle = uuid.UUID(await create_via_form(board, url="http://127.0.0.1:9/idle"))
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id == failing)
            .values(failing_since=now - timedelta(hours=3))
        )
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id == disabled)
            .values(status="inactive", disabled_reason="endpoint answered 410 Gone")
        )
    for hook, outcome, status, hours in (
        (healthy, "delivered", 200, 1),
        (healthy, "delivered", 200, 2),
        (healthy, "retry", 503, 30),  # older than 24 h: not counted
        (failing, "delivered", 200, 5),
        (failing, "retry", 503, 2),
        (failing, "retry", 503, 1),
    ):
        await add_log(
            runtime,
            hook,
            new_id(),
            new_id(),
            account,
            at=now - timedelta(hours=hours),
            outcome=outcome,
            status=status,
        )
    async with runtime.db.read() as conn:
        found = await webhooks_health(conn, account_id=account, now=now)
    assert [(h.webhook.id, h.state) for h in found] == [
        (failing, HealthState.FAILING),
        (disabled, HealthState.DISABLED),
        (healthy, HealthState.HEALTHY),
        (idle, HealthState.IDLE),
    ]
    by_id = {h.webhook.id: h for h in found}
    assert (by_id[healthy].attempts, by_id[healthy].success_rate) == (2, 1.0)
    assert (by_id[failing].attempts, by_id[failing].delivered) == (3, 1)
    assert by_id[idle].success_rate is None
    listing = await board.http.get("/ui/webhooks")
    assert re.findall(r'data-webhook-id="([0-9a-f-]+)" data-health', listing.text) == [
        str(failing),
        str(disabled),
        str(healthy),
        str(idle),
    ]
    assert "endpoint answered 410 Gone" in listing.text
    assert "33 %" in listing.text
    overview = await board.http.get("/ui/")
    assert 'id="failing-count">1 failing<' in overview.text
    other = await dashboards()
    assert "data-health" not in (await other.http.get("/ui/webhooks")).text


async def test_open_and_closed_issues_and_an_issue_page(dashboards, runtime) -> None:
    alice, bob = await dashboards(), await dashboards()
    still_open = await seed_consumer(runtime, alice.key.account_id, "acme")
    closed = await seed_consumer(runtime, alice.key.account_id, "globex")
    async with runtime.db.transaction() as conn:
        await close_issues(
            conn,
            consumer_id=closed["consumer"].id,
            connection_id=closed["odoo"].id,
            now=runtime.clock.now(),
        )
    ids = lambda html: re.findall(r'data-issue-id="([0-9a-f-]+)"', html)  # noqa: E731
    assert ids((await alice.http.get("/ui/issues")).text) == [str(still_open["issue"].id)]
    assert ids((await alice.http.get("/ui/issues?status=closed")).text) == [str(closed["issue"].id)]
    page = await alice.http.get(f"/ui/issues/{closed['issue'].id}")
    assert page.status_code == 200
    assert "globex: credentials refused" in page.text and "globex books" in page.text
    assert len(re.findall(r"<tr><td class=\"mono nowrap\">", page.text)) == 2  # occurrences
    assert (await bob.http.get(f"/ui/issues/{closed['issue'].id}")).status_code == 404
    assert ids((await bob.http.get("/ui/issues?status=closed")).text) == []


async def test_unknown_dashboard_urls_answer_the_styled_404(dashboards) -> None:
    board = await dashboards()
    for path in ("/ui/nope", "/ui/webhooks/not-an-id", f"/ui/issues/{uuid.uuid4()}"):
        response = await board.http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "Page not found" in response.text and "Sign out" in response.text
    anonymous = await dashboards(sign_in=False)
    response = await anonymous.http.get("/ui/nope")
    assert response.status_code == 404 and "Page not found" in response.text
    assert "Sign out" not in response.text
    # the API keeps answering JSON
    assert (await anonymous.http.get("/nope")).headers["content-type"] == "application/json"
