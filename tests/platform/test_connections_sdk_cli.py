"""The official Chift SDK against a live ``hookline serve`` for consumers and connections,
and ``hookline integrations add/list`` as a user runs them."""

from __future__ import annotations

import asyncio
import json

import chift
import httpx

from tests.test_cli_and_sdk import run_cli


def _sdk_login(server_url: str, key: dict) -> None:
    chift.url_base = server_url
    chift.account_id = key["accountId"]
    chift.client_id = key["clientId"]
    chift.client_secret = key["clientSecret"]


async def test_official_sdk_consumers_and_connections(database, live_server) -> None:
    server = live_server()
    result = await asyncio.to_thread(run_cli, database.env(), "accounts", "create", "sdk", "--json")
    key = json.loads(result.stdout)

    def use_sdk() -> dict:
        _sdk_login(server.url, key)
        created = chift.Consumer.create(
            {"name": "SDK Bistro", "email": "a@b.example", "internal_reference": "ERP-7"}
        )
        fetched = chift.Consumer.get(str(created.consumerid))
        listed = chift.Consumer.all()
        link = fetched.Connection.create({"integrationid": 1001, "name": "Books"})
        direct = fetched.Connection.create(
            {
                "integrationid": 2003,
                "name": "Till",
                "credentials": [{"key": "store_code", "value": "S-9"}],
            }
        )
        connections = fetched.Connection.all()
        return {
            "created": created,
            "fetched": fetched,
            "listed": listed,
            "link": link,
            "direct": direct,
            "connections": connections,
        }

    out = await asyncio.to_thread(use_sdk)
    created, fetched = out["created"], out["fetched"]
    assert created.name == "SDK Bistro" and created.internal_reference == "ERP-7"
    assert fetched.consumerid == created.consumerid and fetched.email == "a@b.example"
    assert [c.consumerid for c in out["listed"]] == [created.consumerid]
    assert out["link"].url.startswith(f"{server.url}/activation/")
    assert out["direct"].url.startswith(f"{server.url}/consumers/{created.consumerid}/")
    [connection] = out["connections"]
    assert (
        connection.name,
        connection.integrationid,
        connection.integration,
        connection.status.value,
        connection.agent.status.value,
    ) == ("Till", 2003, "Local POS Agent", "active", "down")

    # The activation link the SDK got works in a plain HTTP client (the consumer's browser).
    async with httpx.AsyncClient() as http:
        page = await http.get(out["link"].url)
        assert page.status_code == 200 and "Connect Odoo Accounting" in page.text


async def test_integrations_add_and_list(database, tmp_path, live_server) -> None:
    server = live_server()
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            [
                {
                    "integrationid": 3001,
                    "name": "Shopify",
                    "api": "eCommerce",
                    "logo_url": "https://cdn.example/shopify.svg",
                    "credentials": [
                        {"name": "shop"},
                        {"name": "token", "secret": True},
                        {"name": "webhook_secret", "optional": True, "visibility": "connector"},
                    ],
                    "supported_countries": ["BE", "FR"],
                    "operations_coverage": [{"operation": "orders.list", "status": "SUPPORTED"}],
                    "post_connections": [
                        {
                            "id": "warehouse",
                            "title": "Warehouse",
                            "optional": True,
                            "resource": "locations",
                        }
                    ],
                },
                {
                    "integrationid": 3002,
                    "name": "Legacy till",
                    "api": "Point of Sale",
                    "local_agent": True,
                    "status": "inactive",
                    "credentials": ["site"],
                },
            ]
        )
    )
    env = database.env()
    added = await asyncio.to_thread(run_cli, env, "integrations", "add", str(catalog))
    assert added.returncode == 0, added.stderr
    assert "added 3001 Shopify (eCommerce)" in added.stdout
    again = await asyncio.to_thread(run_cli, env, "integrations", "add", str(catalog))
    assert again.returncode == 1 and "already exists" in again.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"integrationid": 3003, "name": "X", "api": "Nope"}))
    refused = await asyncio.to_thread(run_cli, env, "integrations", "add", str(bad))
    assert refused.returncode == 1 and "Unknown api" in refused.stderr

    listing = await asyncio.to_thread(run_cli, env, "integrations", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    ids = [item["integrationid"] for item in json.loads(listing.stdout)]
    assert ids == [1001, 1002, 2001, 2002, 2003, 3001, 3002]

    key = json.loads(
        (await asyncio.to_thread(run_cli, env, "accounts", "create", "x", "--json")).stdout
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        token = (await http.post("/token", json=key)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        served = (
            await http.get("/integrations", headers=headers, params={"include_coverage": "true"})
        ).json()
        shopify = next(item for item in served if item["integrationid"] == 3001)
        assert shopify == {
            "integrationid": 3001,
            "name": "Shopify",
            "status": "active",
            "api": "eCommerce",
            "logo_url": "https://cdn.example/shopify.svg",
            "icon_url": "",
            "post_connections": [
                {
                    "id": "warehouse",
                    "title": "Warehouse",
                    "optional": True,
                    "resource": "locations",
                    "config": {"enabled": False, "allow_multiple": False},
                }
            ],
            "operations_coverage": [{"operation": "orders.list", "status": "SUPPORTED"}],
            "credentials": [
                {"name": "shop", "optional": False, "visibility": "both"},
                {"name": "token", "optional": False, "visibility": "both"},
                {"name": "webhook_secret", "optional": True, "visibility": "connector"},
            ],
            "supported_countries": ["BE", "FR"],
            "local_agent": False,
        }
        inactive = (
            await http.get("/integrations", headers=headers, params={"status": "inactive"})
        ).json()
        assert [item["integrationid"] for item in inactive] == [3002]
        # A new consumer can connect to the added integration; not to the inactive one.
        consumer = (await http.post("/consumers", headers=headers, json={"name": "Shop"})).json()[
            "consumerid"
        ]
        ok = await http.post(
            f"/consumers/{consumer}/connections",
            headers=headers,
            json={
                "integrationid": 3001,
                "name": "Store",
                "credentials": [{"key": "shop", "value": "s"}, {"key": "token", "value": "t"}],
            },
        )
        assert ok.status_code == 200, ok.text
        refused_inactive = await http.post(
            f"/consumers/{consumer}/connections",
            headers=headers,
            json={
                "integrationid": 3002,
                "name": "Till",
                "credentials": [{"key": "site", "value": "x"}],
            },
        )
        assert refused_inactive.status_code == 400
