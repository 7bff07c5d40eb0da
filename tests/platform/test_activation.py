"""The activation link, driven over HTTP as a consumer's browser would: GET the page, POST the
form. Only a successful submission creates a connection and fires ``created``."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select

from hookline.store.tables import connections
from tests.platform.connections_support import (
    LOCAL_POS,
    ODOO,
    emitted,
    frozen_api,
    new_connection,
    new_consumer,
    runtime_of,
    strip,
)
from tests.support import ApiClient

ODOO_FORM = {
    "integrationid": str(ODOO),
    "name": "Books",
    "credential.url": "https://o.example",
    "credential.database": "db",
    "credential.username": "me",
    "credential.api_key": "form-secret",
}


def path_of(url: str) -> str:
    assert url.startswith("http://hookline.test/activation/")
    return url.removeprefix("http://hookline.test")


async def new_link(api: ApiClient, consumer_id: str, **body: object) -> str:
    response = await api.post(f"/consumers/{consumer_id}/connections", json=body or None)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"url", "expires_on"}
    return path_of(answer["url"])


async def test_link_page_form_creates_the_connection_and_fires_created(api: ApiClient) -> None:
    consumer_id = await new_consumer(api, "Bistro Zinc", redirect_url="https://app.example/done")
    path = await new_link(api, consumer_id, integrationid=ODOO, name="Books")
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 40  # 32 random bytes
    rt = runtime_of(api)
    assert await emitted(rt, account_id=api.account_id) == []  # a link alone is no connection

    page = await api.http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert "Connect Odoo Accounting" in html and "Bistro Zinc" in html
    for field in ("url", "database", "username", "api_key"):
        assert f'name="credential.{field}"' in html
    assert 'type="password"' in html  # the secret field is masked
    assert '<form method="post"' in html

    done = await api.http.post(path, data=ODOO_FORM)
    assert done.status_code == 200, done.text
    assert "Connected" in done.text and 'href="https://app.example/done"' in done.text
    assert "form-secret" not in done.text

    [connection] = (await api.get(f"/consumers/{consumer_id}/connections")).json()
    assert (connection["name"], connection["integrationid"], connection["status"]) == (
        "Books",
        ODOO,
        "active",
    )
    [body] = await emitted(rt, account_id=api.account_id)
    assert strip(body) == {
        "accountid": api.account_id,
        "event": "account.connection.created",
        "consumerid": consumer_id,
        "created": body["created"],
        "connectionid": connection["connectionid"],
        "status": "active",
    }
    assert body["_integration_id"] == ODOO

    # Single use: the page and the form now refuse, and nothing more happens.
    assert (await api.http.get(path)).status_code == 410
    replay = await api.http.post(path, data=ODOO_FORM)
    assert replay.status_code == 410
    assert "already been used" in replay.text
    assert len(await emitted(rt, account_id=api.account_id)) == 1


async def test_picking_the_integration_on_the_page(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    path = await new_link(api, consumer_id)
    chooser = await api.http.get(path)
    assert chooser.status_code == 200
    options = re.findall(r'<option value="(\d+)">', chooser.text)
    assert options == ["1001", "1002", "2001", "2002", "2003"]
    assert 'method="get"' in chooser.text

    fields = await api.http.get(path, params={"integrationid": "2001"})
    assert 'name="credential.business_location_id"' in fields.text
    assert 'name="credential.api_token"' in fields.text
    bad_choice = await api.http.get(path, params={"integrationid": "424242"})
    assert bad_choice.status_code == 200 and "does not exist" in bad_choice.text

    done = await api.http.post(
        path,
        data={
            "integrationid": "2001",
            "name": "",
            "credential.business_location_id": "loc-1",
            "credential.api_token": "tok",
        },
    )
    assert done.status_code == 200, done.text
    [connection] = (await api.get(f"/consumers/{consumer_id}/connections")).json()
    assert (connection["integrationid"], connection["name"]) == (2001, "Lightspeed Restaurant")
    assert [b["event"] for b in await emitted(runtime_of(api), account_id=api.account_id)] == [
        "account.connection.created"
    ]


async def test_refused_credentials_create_nothing_and_keep_the_link_usable(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    path = await new_link(api, consumer_id, integrationid=ODOO)
    rt = runtime_of(api)
    missing = {key: value for key, value in ODOO_FORM.items() if key != "credential.api_key"}
    refused = await api.http.post(path, data=missing)
    assert refused.status_code == 400
    assert "Missing credential(s) for Odoo Accounting: api_key" in refused.text
    assert 'name="credential.api_key"' in refused.text  # the form again, to correct
    wrong_integration = await api.http.post(path, data={**ODOO_FORM, "integrationid": "2001"})
    assert wrong_integration.status_code == 400
    assert (await api.get(f"/consumers/{consumer_id}/connections")).json() == []
    assert await emitted(rt, account_id=api.account_id) == []

    fixed = await api.http.post(path, data=ODOO_FORM)
    assert fixed.status_code == 200
    assert len(await emitted(rt, account_id=api.account_id)) == 1


async def test_abandoned_expired_and_unknown_links_fire_nothing(database) -> None:
    async with frozen_api(database) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        abandoned = await new_link(api, consumer_id, integrationid=ODOO)
        expiring = await new_link(api, consumer_id, integrationid=ODOO)
        assert (await api.http.get(abandoned)).status_code == 200  # opened, never submitted

        clock.advance(1799)
        assert (await api.http.get(expiring)).status_code == 200
        clock.advance(1)  # exactly 30 minutes after creation
        for path in (abandoned, expiring):
            page = await api.http.get(path)
            assert page.status_code == 410
            assert "expired" in page.text
            late = await api.http.post(path, data=ODOO_FORM)
            assert late.status_code == 410
        unknown = await api.http.post("/activation/" + "x" * 43, data=ODOO_FORM)
        assert unknown.status_code == 404
        assert "does not exist" in unknown.text
        async with rt.db.read() as conn:  # (the access token expired with the links)
            assert (await conn.execute(select(connections))).all() == []
        assert await emitted(rt, account_id=api.account_id) == []


async def test_activation_ttl_and_public_url_settings(database) -> None:
    async with frozen_api(
        database, activation_ttl_seconds=60, public_url="https://hooks.example/"
    ) as (api, _rt, clock):
        consumer_id = await new_consumer(api)
        response = await api.post(f"/consumers/{consumer_id}/connections", json={})
        answer = response.json()
        assert answer["url"].startswith("https://hooks.example/activation/")
        assert answer["expires_on"] == int(clock.now().timestamp()) + 60
        path = answer["url"].removeprefix("https://hooks.example")
        clock.advance(61)
        assert (await api.http.get(path)).status_code == 410


async def test_local_agent_activation_shows_the_agent_token_once(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    path = await new_link(api, consumer_id, integrationid=LOCAL_POS)
    done = await api.http.post(
        path, data={"integrationid": str(LOCAL_POS), "credential.store_code": "S-1"}
    )
    assert done.status_code == 200
    token = re.search(r'<code id="agent-token">([^<]+)</code>', done.text).group(1)
    assert token.startswith("hlagent_")
    beat = await api.http.post("/agent/heartbeat", headers={"Authorization": f"Bearer {token}"})
    assert beat.status_code == 200
    assert beat.json()["came_up"] is True


async def test_update_link_from_patch_changes_the_credentials(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    connection_id = (await new_connection(api, consumer_id, ODOO))["connectionid"]
    patched = await api.patch(f"/consumers/{consumer_id}/connections/{connection_id}", json={})
    path = path_of(patched.json()["url"])
    page = await api.http.get(path)
    assert page.status_code == 200
    assert 'name="name"' not in page.text  # updating: credentials only
    assert "s3cret-odoo-key" not in page.text  # secrets are never pre-filled
    done = await api.http.post(path, data={"credential.api_key": "rotated"})
    assert done.status_code == 200, done.text
    assert "Connection updated" in done.text
    rt = runtime_of(api)
    bodies = await emitted(rt, account_id=api.account_id)
    assert [(b["event"], b["connectionid"], b["status"]) for b in bodies] == [
        ("account.connection.created", connection_id, "active"),
        ("account.connection.updated", connection_id, "active"),
    ]
    from hookline.platform.connections import get_credentials

    async with rt.db.read() as conn:
        stored = await get_credentials(
            conn, rt.secret_box, uuid.UUID(api.account_id), uuid.UUID(connection_id)
        )
    assert stored["api_key"] == "rotated" and stored["username"] == "admin"
    assert (await api.http.post(path, data={"credential.api_key": "again"})).status_code == 410
