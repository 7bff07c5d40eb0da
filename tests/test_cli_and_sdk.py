"""The CLI as a user runs it, and the official Chift SDK against a live hookline server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import chift

from hookline import __version__


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_version(tmp_path) -> None:
    result = run_cli({"PATH": "/usr/bin:/bin"}, "version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


async def test_accounts_create_json_prints_exactly_the_key(database, live_server) -> None:
    server = live_server()  # migrates the database first
    result = await asyncio.to_thread(run_cli, database.env(), "accounts", "create", "acme",
                                     "--json")
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)
    assert set(key) == {"accountId", "clientId", "clientSecret"}
    listing = await asyncio.to_thread(run_cli, database.env(), "accounts", "list")
    assert key["accountId"][:8] in listing.stdout

    import httpx

    async with httpx.AsyncClient(base_url=server.url) as http:
        token = await http.post("/token", json=key)
        assert token.status_code == 200
        assert (await http.get("/webhooks/list", headers={
            "Authorization": f"Bearer {token.json()['access_token']}"})).status_code == 200


async def test_official_sdk_lists_the_thirteen_webhook_types(database, live_server) -> None:
    server = live_server()
    result = await asyncio.to_thread(run_cli, database.env(), "accounts", "create", "sdk",
                                     "--json")
    key = json.loads(result.stdout)

    def use_sdk() -> list:
        chift.url_base = server.url
        chift.account_id = key["accountId"]
        chift.client_id = key["clientId"]
        chift.client_secret = key["clientSecret"]
        return chift.WebhookType.all()

    types = await asyncio.to_thread(use_sdk)
    assert len(types) == 13
    assert {(t.event, t.api) for t in types} >= {("pos.order.updated", "POS"),
                                                  ("account.connection.up", None)}
