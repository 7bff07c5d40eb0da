"""Consumers over HTTP: CRUD as in the contract, filters, limits, account scoping, and the
connection events a consumer's deletion fires."""

from __future__ import annotations

import uuid

from tests.platform.connections_support import (
    ODOO,
    client_for,
    emitted,
    new_connection,
    new_consumer,
    runtime_of,
    strip,
)
from tests.support import ApiClient


async def test_create_get_list_update_delete(api: ApiClient) -> None:
    response = await api.post(
        "/consumers",
        json={
            "name": "Bistro Zinc",
            "email": "owner@zinc.example",
            "internal_reference": "CRM-1",
            "redirect_url": "https://app.example/back",
        },
    )
    assert response.status_code == 200
    created = response.json()
    consumer_id = created["consumerid"]
    assert uuid.UUID(consumer_id).version == 7
    assert {
        key: created[key] for key in ("name", "email", "internal_reference", "redirect_url")
    } == {
        "name": "Bistro Zinc",
        "email": "owner@zinc.example",
        "internal_reference": "CRM-1",
        "redirect_url": "https://app.example/back",
    }

    fetched = await api.get(f"/consumers/{consumer_id}")
    assert fetched.status_code == 200
    assert fetched.json() == created

    listing = await api.get("/consumers")
    assert [item["consumerid"] for item in listing.json()] == [consumer_id]

    patched = await api.patch(f"/consumers/{consumer_id}", json={"name": "Zinc", "email": None})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Zinc"
    assert patched.json()["email"] is None
    assert patched.json()["internal_reference"] == "CRM-1"  # left out: unchanged

    deleted = await api.delete(f"/consumers/{consumer_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await api.get(f"/consumers/{consumer_id}")).status_code == 404
    assert (await api.get("/consumers")).json() == []


async def test_search_and_internal_reference_filters(api: ApiClient) -> None:
    a = await new_consumer(api, "Café de la Gare", internal_reference="REF-A")
    b = await new_consumer(
        api, "Pizzeria Roma", email="roma@pizza.example", internal_reference="REF-B"
    )
    c = await new_consumer(api, "100% Burgers", internal_reference="REF-A2")

    async def ids(**params: str) -> list[str]:
        response = await api.get("/consumers", params=params)
        assert response.status_code == 200
        return [item["consumerid"] for item in response.json()]

    assert await ids(search="gare") == [a]
    assert await ids(search="ROMA") == [b]  # name and email both match: listed once
    assert await ids(search="pizza.example") == [b]
    assert await ids(search="%") == [c]  # LIKE wildcards are matched literally
    assert await ids(search="ref-a") == [a, c]  # internal reference, substring
    assert await ids(internal_reference="REF-A") == [a]  # exact match only
    assert await ids(internal_reference="REF-A", search="burgers") == []
    assert await ids() == [a, b, c]


async def test_contract_limits_are_enforced(api: ApiClient) -> None:
    cases = [
        {"name": ""},
        {"name": "x" * 256},
        {"name": "ok", "email": "e" * 81},
        {"name": "ok", "internal_reference": "r" * 256},
        {},
    ]
    for body in cases:
        response = await api.post("/consumers", json=body)
        assert response.status_code == 422, body
    blank = await api.post("/consumers", json={"name": "   "})
    assert blank.status_code == 400
    assert blank.json()["status"] == "error"
    longest = await api.post(
        "/consumers", json={"name": "n" * 255, "email": "e" * 80, "internal_reference": "r" * 255}
    )
    assert longest.status_code == 200
    consumer_id = longest.json()["consumerid"]
    assert (
        await api.patch(f"/consumers/{consumer_id}", json={"email": "e" * 81})
    ).status_code == 422
    assert (await api.get("/consumers")).json()[0]["name"] == "n" * 255


async def test_unknown_and_malformed_ids(api: ApiClient) -> None:
    unknown = str(uuid.uuid4())
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "patch" else {}
        response = await getattr(api, method)(f"/consumers/{unknown}", **kwargs)
        assert response.status_code == 404, method
        body = response.json()
        assert body["status"] == "error"
        assert body["error_code"] == "ERROR_CONSUMER_NOT_FOUND"
    assert (await api.get("/consumers/not-a-uuid")).status_code == 422


async def test_another_accounts_consumers_answer_404(api: ApiClient) -> None:
    mine = await new_consumer(api, "Mine")
    async with client_for(runtime_of(api), "other") as other:
        theirs = await new_consumer(other, "Theirs")
        assert [c["consumerid"] for c in (await other.get("/consumers")).json()] == [theirs]
        for method in ("get", "patch", "delete"):
            kwargs = {"json": {"name": "stolen"}} if method == "patch" else {}
            response = await getattr(other, method)(f"/consumers/{mine}", **kwargs)
            assert response.status_code == 404, method
        assert (await other.get(f"/consumers/{mine}/connections")).status_code == 404
    assert (await api.get(f"/consumers/{mine}")).json()["name"] == "Mine"
    assert [c["consumerid"] for c in (await api.get("/consumers")).json()] == [mine]


async def test_deleting_a_consumer_deletes_each_connection_with_its_event(api: ApiClient) -> None:
    consumer_id = await new_consumer(api)
    first = await new_connection(api, consumer_id, ODOO)
    second = await new_connection(api, consumer_id, 2003)
    other_consumer = await new_consumer(api, "Kept")
    kept = await new_connection(api, other_consumer, ODOO)
    rt = runtime_of(api)
    before = len(await emitted(rt, account_id=api.account_id))

    assert (await api.delete(f"/consumers/{consumer_id}")).status_code == 204

    after = await emitted(rt, account_id=api.account_id)
    deleted = after[before:]
    assert sorted((strip(body) for body in deleted), key=lambda b: b["connectionid"]) == sorted(
        (
            {
                "accountid": api.account_id,
                "event": "account.connection.deleted",
                "consumerid": consumer_id,
                "created": body["created"],
                "connectionid": conn["connectionid"],
            }
            for body, conn in zip(deleted, (first, second), strict=True)
        ),
        key=lambda b: b["connectionid"],
    )
    assert sorted(body["_integration_id"] for body in deleted) == [ODOO, 2003]
    listing = await api.get(f"/consumers/{other_consumer}/connections")
    assert [c["connectionid"] for c in listing.json()] == [kept["connectionid"]]
