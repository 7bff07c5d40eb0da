"""The webhook page's issue-15 controls: scheme, public key, overlap, filter, test send."""

from __future__ import annotations

import html
import re
import uuid

from hookline.delivery.webhooks import create_webhook, rotate_secret
from tests.ui.conftest import Dashboard


async def _created(board: Dashboard, runtime, url: str, **fields) -> uuid.UUID:
    async with runtime.db.transaction() as conn:
        hook = await create_webhook(
            conn,
            runtime.secret_box,
            account_id=board.key.account_id,
            event="account.connection.created",
            url=url,
            now=runtime.clock.now(),
            **fields,
        )
    return hook.id


async def test_the_page_shows_scheme_key_overlap_and_filter(dashboards, runtime) -> None:
    board = await dashboards()
    ed = await _created(board, runtime, "https://example.com/ed", signature_scheme="ed25519")
    async with runtime.db.transaction() as conn:
        rotated = await rotate_secret(
            conn,
            runtime.secret_box,
            account_id=board.key.account_id,
            webhook_id=ed,
            now=runtime.clock.now(),
            overlap_seconds=3600,
        )
    page = (await board.http.get(f"/ui/webhooks/{ed}")).text
    assert "Ed25519" in page and rotated.webhook.public_key in page
    assert 'id="overlap-until"' in page and "whsk_" not in page
    assert 'name="signingsecret"' not in page  # no shared secret to set for Ed25519

    hmac_hook = await _created(board, runtime, "https://example.com/f", signing_secret="s3")
    response = await board.post(
        f"/ui/webhooks/{hmac_hook}/edit",
        {"url": "https://example.com/f", "status": "active", "filter": '{"status": ["inactive"]}'},
    )
    assert response.status_code == 303
    page = (await board.http.get(f"/ui/webhooks/{hmac_hook}")).text
    assert html.unescape(re.search(r'id="webhook-filter">([^<]*)<', page).group(1)) == (
        '{"status": ["inactive"]}'
    )
    bad = await board.post(
        f"/ui/webhooks/{hmac_hook}/edit", {"status": "active", "filter": '{"colour": ["red"]}'}
    )
    assert bad.status_code == 400 and "Unknown field" in bad.text
    cleared = await board.post(f"/ui/webhooks/{hmac_hook}/edit", {"status": "active", "filter": ""})
    assert cleared.status_code == 303
    assert (
        "none: every event is delivered" in (await board.http.get(f"/ui/webhooks/{hmac_hook}")).text
    )


async def test_send_test_event_shows_the_attempt(dashboards, runtime, receiver) -> None:
    board = await dashboards()
    hook = await _created(board, runtime, f"{receiver.url}/ui-test", signing_secret="s3")
    response = await board.post(f"/ui/webhooks/{hook}/test")
    assert response.status_code == 200, response.text
    [got] = receiver.requests
    assert got.headers["x-hookline-test"] == "1" and "X-Chift-Signature" in got.headers
    result = re.search(r'<table id="test-result">(.*?)</table>', response.text, re.S).group(1)
    assert "delivered" in result and ">200<" in result and ">ok<" in result
    other = await dashboards()
    assert (await other.post(f"/ui/webhooks/{hook}/test")).status_code == 404
    assert len(receiver.requests) == 1
