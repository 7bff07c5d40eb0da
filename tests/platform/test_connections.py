"""Connections over HTTP: direct creation, the one-active rule, PATCH, the connector status
report, DELETE, and the exact events each fires (none on a no-op)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from hookline.store.tables import connections
from tests.platform.connections_support import (
    LOCAL_POS,
    ODOO,
    ODOO_CREDENTIALS,
    client_for,
    emitted,
    new_connection,
    new_consumer,
    runtime_of,
    strip,
)
from tests.support import ApiClient


def expected(
    api: ApiClient, event: str, consumer_id: str, connection_id: str, created: int, **fields: str
) -> dict:
    return {
        "accountid": api.account_id,
        "event": event,
        "consumerid": consumer_id,
        "created": created,
        "connectionid": connection_id,
        **fields,
    }


async def test_creating_with_credentials_connects_at_once_and_fires_created(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    answer = await new_connection(api, consumer_id, ODOO, name="Main books")
    connection_id = answer["connectionid"]
    assert answer == {
        "url": f"http://hookline.test/consumers/{consumer_id}/connections/{connection_id}",
        "connectionid": connection_id,
        "status": "active",
    }  # no agent_token: not local

    listing = await api.get(f"/consumers/{consumer_id}/connections")
    assert listing.status_code == 200
    assert listing.json() == [
        {
            "connectionid": connection_id,
            "name": "Main books",
            "integration": "Odoo Accounting",
            "integrationid": ODOO,
            "api": "Accounting",
            "data": None,
            "status": "active",
            "agent": None,
        }
    ]
    one = await api.get(f"/consumers/{consumer_id}/connections/{connection_id}")
    assert one.json() == listing.json()[0]

    rt = runtime_of(api)
    [body] = await emitted(rt, account_id=api.account_id)
    assert body["_integration_id"] == ODOO
    assert strip(body) == expected(
        api,
        "account.connection.created",
        consumer_id,
        connection_id,
        body["created"],
        status="active",
    )
    assert abs(body["created"] - rt.clock.now().timestamp()) < 60


async def test_credentials_are_encrypted_at_rest_and_never_returned(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    answer = await new_connection(api, consumer_id, ODOO)
    rt = runtime_of(api)
    async with rt.db.read() as conn:
        stored = (await conn.execute(select(connections.c.credentials_encrypted))).scalar_one()
    assert "s3cret-odoo-key" not in stored and "odoo.example" not in stored
    from hookline.platform.connections import read_credentials

    assert read_credentials(rt.secret_box, stored) == {
        "url": "https://odoo.example",
        "database": "prod",
        "username": "admin",
        "api_key": "s3cret-odoo-key",
    }
    for url in (
        f"/consumers/{consumer_id}/connections",
        f"/consumers/{consumer_id}/connections/{answer['connectionid']}",
    ):
        assert "s3cret" not in (await api.get(url)).text


async def test_invalid_credentials_or_integration_create_nothing(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    base = f"/consumers/{consumer_id}/connections"
    missing = [item for item in ODOO_CREDENTIALS if item["key"] != "api_key"]
    cases = [
        (
            {"integrationid": ODOO, "name": "x", "credentials": missing},
            400,
            "ERROR_INVALID_CREDENTIALS",
        ),
        (
            {
                "integrationid": ODOO,
                "name": "x",
                "credentials": [*ODOO_CREDENTIALS, {"key": "pin", "value": "1"}],
            },
            400,
            "ERROR_INVALID_CREDENTIALS",
        ),
        (
            {
                "integrationid": ODOO,
                "name": "x",
                "credentials": [*ODOO_CREDENTIALS, ODOO_CREDENTIALS[0]],
            },
            400,
            None,
        ),
        (
            {"integrationid": 999999, "name": "x", "credentials": ODOO_CREDENTIALS},
            400,
            "ERROR_INVALID_INTEGRATION",
        ),
        ({"name": "x", "credentials": ODOO_CREDENTIALS}, 400, None),
        ({"integrationid": ODOO, "name": "n" * 81, "credentials": ODOO_CREDENTIALS}, 422, None),
        ({"integrationid": ODOO, "credentials": [{"key": "url"}]}, 422, None),
    ]
    for body, status, code in cases:
        response = await api.post(base, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["status"] == "error"
        if code:
            assert response.json()["error_code"] == code
        assert "s3cret-odoo-key" not in response.text
    assert (await api.get(base)).json() == []
    assert await emitted(runtime_of(api), account_id=api.account_id) == []


async def test_one_active_connection_per_consumer_and_integration(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    first = await new_connection(api, consumer_id, ODOO)
    again = await api.post(
        f"/consumers/{consumer_id}/connections",
        json={"integrationid": ODOO, "name": "again", "credentials": ODOO_CREDENTIALS},
    )
    assert again.status_code == 400
    assert again.json()["error_code"] == "ERROR_CONNECTION_ALREADY_EXISTS"
    # Another integration, or another consumer, is fine.
    await new_connection(api, consumer_id, LOCAL_POS)
    await new_connection(api, await new_consumer(api, "Other"), ODOO)

    status_url = f"/consumers/{consumer_id}/connections/{first['connectionid']}/status"
    assert (await api.post(status_url, json={"status": "inactive"})).status_code == 200
    second = await new_connection(api, consumer_id, ODOO, name="replacement")
    # The old one cannot come back while the replacement is active.
    revived = await api.post(status_url, json={"status": "active"})
    assert revived.status_code == 400
    assert revived.json()["error_code"] == "ERROR_CONNECTION_ALREADY_EXISTS"
    statuses = {
        c["connectionid"]: c["status"]
        for c in (await api.get(f"/consumers/{consumer_id}/connections")).json()
    }
    assert statuses[first["connectionid"]] == "inactive"
    assert statuses[second["connectionid"]] == "active"
    events = await emitted(runtime_of(api), account_id=api.account_id)
    assert [b["event"] for b in events].count("account.connection.created") == 4
    assert [b["event"] for b in events].count("account.connection.updated") == 1


async def test_patch_fires_updated_only_when_something_changes(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    connection_id = (await new_connection(api, consumer_id, ODOO, name="Books"))["connectionid"]
    url = f"/consumers/{consumer_id}/connections/{connection_id}"
    rt = runtime_of(api)

    async def updates() -> list[dict]:
        return [
            strip(b)
            for b in await emitted(rt, account_id=api.account_id)
            if b["event"] == "account.connection.updated"
        ]

    renamed = await api.patch(url, json={"name": "Ledger"})
    assert renamed.status_code == 200
    link = renamed.json()
    assert link["connectionid"] == connection_id and link["status"] == "active"
    assert link["url"].startswith("http://hookline.test/activation/")  # to re-enter credentials
    [first] = await updates()
    assert first == expected(
        api,
        "account.connection.updated",
        consumer_id,
        connection_id,
        first["created"],
        status="active",
    )
    assert (await api.get(url)).json()["name"] == "Ledger"

    # The same name again, the same credentials again, an empty body: no event.
    assert (await api.patch(url, json={"name": "Ledger"})).status_code == 200
    same = await api.patch(
        url, json={"credentials": [{"key": "api_key", "value": "s3cret-odoo-key"}]}
    )
    assert same.status_code == 200
    assert same.json()["url"] == f"http://hookline.test{url}"
    assert (await api.patch(url)).status_code == 200
    assert len(await updates()) == 1

    rotated = await api.patch(url, json={"credentials": [{"key": "api_key", "value": "new"}]})
    assert rotated.status_code == 200
    assert len(await updates()) == 2
    from hookline.platform.connections import get_credentials

    async with rt.db.read() as conn:
        stored = await get_credentials(
            conn, rt.secret_box, uuid.UUID(api.account_id), uuid.UUID(connection_id)
        )
    assert stored["api_key"] == "new" and stored["url"] == "https://odoo.example"

    refused = await api.patch(url, json={"credentials": [{"key": "nope", "value": "x"}]})
    assert refused.status_code == 400
    assert (await api.patch(url, json={"name": "n" * 81})).status_code == 422
    assert len(await updates()) == 2


async def test_connector_status_report_toggles_status_with_one_event_each(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    connection_id = (await new_connection(api, consumer_id, ODOO))["connectionid"]
    url = f"/consumers/{consumer_id}/connections/{connection_id}/status"
    rt = runtime_of(api)

    down = await api.post(
        url, json={"status": "inactive", "error_code": "ERROR_AUTH", "message": "401 from Odoo"}
    )
    assert down.status_code == 200
    assert down.json()["status"] == "inactive"
    assert (await api.post(url, json={"status": "inactive"})).status_code == 200  # no-op
    up = await api.post(url, json={"status": "active"})
    assert up.json()["status"] == "active"
    assert (await api.post(url, json={"status": "active"})).status_code == 200  # no-op
    assert (await api.post(url, json={"status": "broken"})).status_code == 422

    bodies = [
        b
        for b in await emitted(rt, account_id=api.account_id)
        if b["event"] == "account.connection.updated"
    ]
    assert [strip(b) for b in bodies] == [
        expected(
            api,
            "account.connection.updated",
            consumer_id,
            connection_id,
            bodies[0]["created"],
            status="inactive",
        ),
        expected(
            api,
            "account.connection.updated",
            consumer_id,
            connection_id,
            bodies[1]["created"],
            status="active",
        ),
    ]
    assert all(b["_integration_id"] == ODOO for b in bodies)


async def test_delete_fires_deleted_once_and_answers_404_after(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    connection_id = (await new_connection(api, consumer_id, ODOO))["connectionid"]
    url = f"/consumers/{consumer_id}/connections/{connection_id}"
    response = await api.delete(url)
    assert response.status_code == 204
    assert (await api.delete(url)).status_code == 404
    assert (await api.patch(url, json={"name": "x"})).status_code == 404
    assert (await api.get(f"/consumers/{consumer_id}/connections")).json() == []
    bodies = await emitted(runtime_of(api), account_id=api.account_id)
    assert [strip(b) for b in bodies[1:]] == [
        expected(
            api, "account.connection.deleted", consumer_id, connection_id, bodies[1]["created"]
        )
    ]
    # The freed slot can be used again.
    await new_connection(api, consumer_id, ODOO)


async def test_connections_are_scoped_to_the_account_and_the_consumer(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    connection_id = (await new_connection(api, consumer_id, ODOO))["connectionid"]
    sibling = await new_consumer(api, "Sibling")
    # Right account, wrong consumer.
    assert (
        await api.delete(f"/consumers/{sibling}/connections/{connection_id}")
    ).status_code == 404
    async with client_for(runtime_of(api), "intruder") as other:
        theirs = await new_consumer(other, "Theirs")
        base = f"/consumers/{consumer_id}/connections"
        assert (await other.get(base)).status_code == 404
        assert (await other.post(base, json={})).status_code == 404
        assert (
            await other.post(
                base, json={"integrationid": ODOO, "name": "x", "credentials": ODOO_CREDENTIALS}
            )
        ).status_code == 404
        for method, path, kwargs in (
            ("patch", f"{base}/{connection_id}", {"json": {"name": "x"}}),
            ("delete", f"{base}/{connection_id}", {}),
            ("get", f"{base}/{connection_id}", {}),
            ("post", f"{base}/{connection_id}/status", {"json": {"status": "inactive"}}),
            ("delete", f"/consumers/{theirs}/connections/{connection_id}", {}),
            (
                "post",
                f"/consumers/{theirs}/connections/{connection_id}/status",
                {"json": {"status": "inactive"}},
            ),
        ):
            response = await getattr(other, method)(path, **kwargs)
            assert response.status_code == 404, (method, path)
    listing = (await api.get(f"/consumers/{consumer_id}/connections")).json()
    assert [(c["connectionid"], c["status"], c["name"]) for c in listing] == [
        (connection_id, "active", "Main books")
    ]
    assert len(await emitted(runtime_of(api), account_id=api.account_id)) == 1


async def test_integrations_catalog_follows_the_contract(api: ApiClient) -> None:
    response = await api.get("/integrations")
    assert response.status_code == 200
    items = {item["integrationid"]: item for item in response.json()}
    assert sorted(items) == [1001, 1002, 2001, 2002, 2003]
    assert items[2003] == {
        "integrationid": 2003,
        "name": "Local POS Agent",
        "status": "active",
        "api": "Point of Sale",
        "logo_url": "",
        "icon_url": "",
        "post_connections": [],
        "operations_coverage": [],
        "supported_countries": None,
        "local_agent": True,
        "credentials": [
            {"name": "store_code", "optional": False, "visibility": "both"},
            {"name": "agent_password", "optional": True, "visibility": "both"},
        ],
    }
    assert (await api.get("/integrations", params={"status": "inactive"})).json() == []
    assert len((await api.get("/integrations", params={"status": "active"})).json()) == 5
    assert (await api.get("/integrations", params={"status": "nope"})).status_code == 422
    assert (await api.http.get("/integrations")).status_code == 401


async def test_concurrent_creates_leave_one_active_connection_on_postgresql(
    postgres_backend, tmp_path
) -> None:
    import asyncio

    from tests.conftest import Backend
    from tests.platform.connections_support import frozen_api

    database = Backend(tmp_path, postgres_backend)
    try:
        async with frozen_api(database) as (api, rt, _clock):
            consumer_id = await new_consumer(api)
            body = {"integrationid": ODOO, "name": "x", "credentials": ODOO_CREDENTIALS}
            answers = await asyncio.gather(
                *(api.post(f"/consumers/{consumer_id}/connections", json=body) for _ in range(6))
            )
            assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400]
            assert len((await api.get(f"/consumers/{consumer_id}/connections")).json()) == 1
            assert [b["event"] for b in await emitted(rt, account_id=api.account_id)] == [
                "account.connection.created"
            ]
    finally:
        await database.drop()
