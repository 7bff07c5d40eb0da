"""The dashboard over HTTP: sign-in, sessions, CSRF, logout, account scoping, webhook pages."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.runtime import Runtime
from hookline.store.tables import deliveries, delivery_queue, webhooks
from hookline.ui.session import COOKIE_NAME, Session, encode_session
from tests.ui.conftest import Dashboard

RECEIVER = "http://127.0.0.1:9/hook"


async def webhook_count(runtime: Runtime) -> int:
    async with runtime.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(webhooks))).scalar_one()


async def create_via_form(board: Dashboard, **fields: str) -> str:
    response = await board.post(
        "/ui/webhooks", {"event": "account.connection.created", "url": RECEIVER, **fields}
    )
    assert response.status_code == 303, response.text
    match = re.fullmatch(
        r"/ui/webhooks/([0-9a-f-]{36})\?notice=created", response.headers["location"]
    )
    assert match, response.headers["location"]
    return match.group(1)


async def test_pages_need_a_session(dashboards) -> None:
    board = await dashboards(sign_in=False)
    for page in ("/ui/", "/ui/webhooks", "/ui/events", f"/ui/webhooks/{uuid.uuid4()}"):
        response = await board.http.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"] == "/ui/login"
    response = await board.http.post("/ui/webhooks", data={"event": "x", "url": RECEIVER})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"


async def test_sign_in_sets_a_hardened_session_cookie(dashboards) -> None:
    board = await dashboards(sign_in=False)
    response = await board.login()
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"
    cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith(COOKIE_NAME + "=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=28800" in cookie
    assert "Path=/ui" in cookie
    page = await board.http.get("/ui/")
    assert page.status_code == 200
    assert str(board.key.account_id) in page.text


async def test_login_failures_answer_401_without_a_session(dashboards) -> None:
    board = await dashboards(sign_in=False)
    good = {
        "accountId": str(board.key.account_id),
        "clientId": board.key.client_id,
        "clientSecret": board.key.client_secret,
    }
    for change in (
        {"clientSecret": "wrong"},
        {"accountId": str(uuid.uuid4())},
        {"clientId": "nobody"},
        {"accountId": "not-a-uuid"},
        {"clientSecret": ""},
    ):
        token = await board.login_form_token()
        response = await board.http.post("/ui/login", data={"csrf": token, **good, **change})
        assert response.status_code == 401, change
        assert "Invalid credentials." in response.text
        assert COOKIE_NAME not in board.http.cookies
        assert (await board.http.get("/ui/")).status_code == 303


async def test_login_form_is_csrf_protected(dashboards) -> None:
    board = await dashboards(sign_in=False)
    await board.login_form_token()
    data = {
        "accountId": str(board.key.account_id),
        "clientId": board.key.client_id,
        "clientSecret": board.key.client_secret,
    }
    assert (await board.http.post("/ui/login", data=data)).status_code == 403
    response = await board.http.post("/ui/login", data={**data, "csrf": "forged"})
    assert response.status_code == 403
    assert COOKIE_NAME not in board.http.cookies


async def test_posts_without_the_right_csrf_token_are_refused(dashboards, runtime) -> None:
    board = await dashboards()
    other = await dashboards()
    form = {"event": "account.connection.created", "url": RECEIVER}
    assert (await board.http.post("/ui/webhooks", data=form)).status_code == 403
    assert (
        await board.http.post("/ui/webhooks", data={**form, "csrf": "x" * 43})
    ).status_code == 403
    # Another session's token does not work either: tokens are bound to the session.
    foreign = await other.csrf()
    assert foreign != await board.csrf()
    assert (
        await board.http.post("/ui/webhooks", data={**form, "csrf": foreign})
    ).status_code == 403
    assert await webhook_count(runtime) == 0
    webhook_id = await create_via_form(board)
    for action in ("delete", "edit"):
        response = await board.http.post(
            f"/ui/webhooks/{webhook_id}/{action}", data={"status": "inactive"}
        )
        assert response.status_code == 403, action
    assert (await board.http.post("/ui/logout")).status_code == 403
    assert await webhook_count(runtime) == 1
    page = await board.http.get(f"/ui/webhooks/{webhook_id}")
    assert 'id="webhook-status">active<' in page.text


async def test_tampered_or_expired_session_cookies_are_ignored(dashboards, runtime) -> None:
    board = await dashboards()
    value = board.http.cookies[COOKIE_NAME]
    payload, signature = value.split(".")
    board.http.cookies.set(COOKIE_NAME, payload + "." + signature[:-2] + "AA", path="/ui")
    assert (await board.http.get("/ui/")).status_code == 303
    now = int(runtime.clock.now().timestamp())
    expired = Session(board.key.account_id, board.key.client_id, "sid", now - 1)
    board.http.cookies.set(
        COOKIE_NAME, encode_session(runtime.settings.jwt_key(), expired), path="/ui"
    )
    assert (await board.http.get("/ui/")).status_code == 303
    forged = Session(board.key.account_id, board.key.client_id, "sid", now + 3600)
    board.http.cookies.set(COOKIE_NAME, encode_session("another-key", forged), path="/ui")
    assert (await board.http.get("/ui/")).status_code == 303


async def test_logout_clears_the_session(dashboards) -> None:
    board = await dashboards()
    copied = board.http.cookies[COOKIE_NAME]  # as a stolen or leftover copy would be
    response = await board.post("/ui/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=signedout"
    assert COOKIE_NAME not in board.http.cookies
    assert (await board.http.get("/ui/webhooks")).status_code == 303
    page = await board.http.get("/ui/login?notice=signedout")
    assert "You are signed out." in page.text
    board.http.cookies.set(COOKIE_NAME, copied)  # the copy, replayed after signing out
    replayed = await board.http.get("/ui/webhooks")
    assert (replayed.status_code, replayed.headers["location"]) == (303, "/ui/login")
    again = await dashboards()  # other sessions, and signing in again, are unaffected
    assert (await again.http.get("/ui/webhooks")).status_code == 200


async def test_every_page_is_scoped_to_the_signed_in_account(dashboards, runtime) -> None:
    alice = await dashboards()
    bob = await dashboards()
    webhook_id = await create_via_form(alice, url="http://127.0.0.1:9/alice")
    listing = await bob.http.get("/ui/webhooks")
    assert "127.0.0.1:9/alice" not in listing.text
    assert "No webhooks yet" in listing.text
    assert (await bob.http.get(f"/ui/webhooks/{webhook_id}")).status_code == 404
    for action, data in (
        ("edit", {"status": "inactive"}),
        ("delete", {}),
        ("recover", {"since": "2026-01-01T00:00"}),
        (f"logs/{uuid.uuid4()}/redeliver", {}),
    ):
        response = await bob.post(f"/ui/webhooks/{webhook_id}/{action}", data)
        assert response.status_code == 404, action
    assert await webhook_count(runtime) == 1
    page = await alice.http.get(f"/ui/webhooks/{webhook_id}")
    assert page.status_code == 200
    assert 'id="webhook-status">active<' in page.text
    assert "127.0.0.1:9/alice" in (await alice.http.get("/ui/webhooks")).text


async def test_create_edit_disable_and_delete_a_webhook(dashboards, runtime) -> None:
    board = await dashboards()
    webhook_id = await create_via_form(board, signingsecret="s3cret-value")
    page = await board.http.get(f"/ui/webhooks/{webhook_id}?notice=created")
    assert "Webhook created." in page.text
    assert "set (never shown)" in page.text
    assert "s3cret-value" not in page.text
    assert "No requests yet" in page.text
    response = await board.post(
        f"/ui/webhooks/{webhook_id}/edit",
        {"url": "http://127.0.0.1:9/v2", "status": "active", "remove_secret": "1"},
    )
    assert response.status_code == 303
    page = await board.http.get(f"/ui/webhooks/{webhook_id}")
    assert "http://127.0.0.1:9/v2" in page.text
    assert "none: deliveries are unsigned" in page.text
    response = await board.post(f"/ui/webhooks/{webhook_id}/edit", {"status": "inactive"})
    assert response.status_code == 303
    page = await board.http.get(f"/ui/webhooks/{webhook_id}")
    assert 'id="webhook-status">inactive<' in page.text
    # Recovering an inactive webhook is a rule violation, shown as a 400 page.
    response = await board.post(f"/ui/webhooks/{webhook_id}/recover", {"since": "2026-01-01T00:00"})
    assert response.status_code == 400
    assert "inactive" in response.text
    response = await board.post(f"/ui/webhooks/{webhook_id}/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/webhooks?notice=deleted"
    assert await webhook_count(runtime) == 0
    assert (await board.http.get(f"/ui/webhooks/{webhook_id}")).status_code == 404


async def test_invalid_webhook_forms_show_the_rule_that_was_broken(dashboards, runtime) -> None:
    board = await dashboards()
    response = await board.post("/ui/webhooks", {"event": "no.such.event", "url": RECEIVER})
    assert response.status_code == 400
    assert "Unknown event" in response.text
    response = await board.post("/ui/webhooks", {"event": "pos.order.updated", "url": RECEIVER})
    assert response.status_code == 400
    assert "needs an integrationid" in response.text
    response = await board.post(
        "/ui/webhooks", {"event": "account.flow.enabled", "url": "ftp://example.com"}
    )
    assert response.status_code == 400
    assert "http:// or https://" in response.text
    await create_via_form(board)
    response = await board.post(
        "/ui/webhooks", {"event": "account.connection.created", "url": RECEIVER}
    )
    assert response.status_code == 400
    assert "already exists" in response.text
    pos = await create_via_form(board, event="pos.order.updated", integrationid="2001")
    page = await board.http.get(f"/ui/webhooks/{pos}")
    assert "integration</th><td>2001" in page.text
    assert await webhook_count(runtime) == 2


async def test_catalog_page_lists_every_event_type_with_schema_and_example(dashboards) -> None:
    board = await dashboards()
    page = await board.http.get("/ui/event-types")
    assert page.status_code == 200
    names = re.findall(r'<code class="event-name">([a-z._]+)</code>', page.text)
    assert len(names) == 13
    assert names[0] == "account.connection.created"
    assert names[-1] == "pos.order.updated"
    assert "urn:hookline:event:pos.order.completed" in page.text
    assert "&#34;order_id&#34;: &#34;ord-10042&#34;" in page.text


async def test_static_stylesheet_is_served(dashboards) -> None:
    board = await dashboards(sign_in=False)
    response = await board.http.get("/ui/static/ui.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert (await board.http.get("/ui/static/nope.css")).status_code == 404
    assert (await board.http.get("/ui/static/..%2Froutes.py")).status_code == 404


async def test_recover_requeues_the_failed_deliveries_since_the_given_time(
    dashboards,
    runtime,
) -> None:
    board = await dashboards()
    webhook_id = await create_via_form(board, event="account.connection.up")
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        emitted = [
            await emit_draft(
                conn,
                EventDraft(
                    account_id=board.key.account_id,
                    event="account.connection.up",
                    consumer_id=uuid.uuid4(),
                    fields={"connectionid": uuid.uuid4()},
                    now=now,
                ),
            )
            for _ in range(2)
        ]
        # As the worker leaves them after the last retry: failed and out of the queue.
        failed_ids = [event.delivery_ids[0] for event in emitted]
        await conn.execute(
            update(deliveries).where(deliveries.c.id.in_(failed_ids)).values(status="failed")
        )
        await conn.execute(delete(delivery_queue))
    since = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    response = await board.post(f"/ui/webhooks/{webhook_id}/recover", {"since": since})
    assert response.status_code == 303
    assert response.headers["location"] == (f"/ui/webhooks/{webhook_id}?notice=recovered&count=2")
    page = await board.http.get(response.headers["location"])
    assert "Recovery queued: 2 failed delivery(ies) will be sent again." in page.text
    async with runtime.db.read() as conn:
        queued = set((await conn.execute(select(delivery_queue.c.delivery_id))).scalars())
    assert queued == set(failed_ids)
    response = await board.post(f"/ui/webhooks/{webhook_id}/recover", {"since": "yesterday"})
    assert response.status_code == 400
    assert "YYYY-MM-DDTHH:MM" in response.text


async def test_the_webhook_page_shows_its_destinations_circuit(dashboards, runtime) -> None:
    from hookline.delivery.sender import host_key
    from hookline.store.destinations import open_circuit

    board = await dashboards()
    webhook_id = await create_via_form(board)
    page = await board.http.get(f"/ui/webhooks/{webhook_id}")
    assert '<span class="badge circuit-closed">closed</span> requests go out' in page.text
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        await open_circuit(conn, host_key(RECEIVER), failures=20, now=now, cooldown=60)
    page = await board.http.get(f"/ui/webhooks/{webhook_id}")
    assert '<span class="badge circuit-open">open</span> after 20 consecutive' in page.text
