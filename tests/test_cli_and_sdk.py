"""The CLI as a user runs it, and the official Chift SDK against a live hookline server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import chift

from hookline import __version__


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(tmp_path) -> None:
    result = run_cli({"PATH": "/usr/bin:/bin"}, "version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


async def test_accounts_create_json_prints_exactly_the_key(database, live_server) -> None:
    server = live_server()  # migrates the database first
    result = await asyncio.to_thread(
        run_cli, database.env(), "accounts", "create", "acme", "--json"
    )
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)
    assert set(key) == {"accountId", "clientId", "clientSecret"}
    listing = await asyncio.to_thread(run_cli, database.env(), "accounts", "list")
    assert key["accountId"][:8] in listing.stdout

    import httpx

    async with httpx.AsyncClient(base_url=server.url) as http:
        token = await http.post("/token", json=key)
        assert token.status_code == 200
        assert (
            await http.get(
                "/webhooks/list",
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
        ).status_code == 200


async def test_official_sdk_lists_the_thirteen_webhook_types(database, live_server) -> None:
    server = live_server()
    result = await asyncio.to_thread(run_cli, database.env(), "accounts", "create", "sdk", "--json")
    key = json.loads(result.stdout)

    def use_sdk() -> list:
        chift.url_base = server.url
        chift.account_id = key["accountId"]
        chift.client_id = key["clientId"]
        chift.client_secret = key["clientSecret"]
        return chift.WebhookType.all()

    types = await asyncio.to_thread(use_sdk)
    assert len(types) == 13
    assert {(t.event, t.api) for t in types} >= {
        ("pos.order.updated", "POS"),
        ("account.connection.up", None),
    }


async def test_api_keys_are_added_listed_and_revoked(database, live_server) -> None:
    """Rotation as a user does it: add a key, switch, revoke the old one; the revoked key gets
    no token any more and its dashboard session ends, the new one works."""
    import httpx

    from tests.ui.conftest import csrf_of

    server = live_server()
    created = await asyncio.to_thread(
        run_cli, database.env(), "accounts", "create", "rot", "--json"
    )
    old = json.loads(created.stdout)
    added = await asyncio.to_thread(
        run_cli, database.env(), "accounts", "add-key", old["accountId"], "--name", "ci", "--json"
    )
    assert added.returncode == 0, added.stderr
    new = json.loads(added.stdout)
    assert new["accountId"] == old["accountId"] and new["clientId"] != old["clientId"]
    keys = await asyncio.to_thread(run_cli, database.env(), "accounts", "keys", old["accountId"])
    assert old["clientId"] in keys.stdout and new["clientId"] in keys.stdout
    assert "ci" in keys.stdout and new["clientSecret"] not in keys.stdout

    async with httpx.AsyncClient(base_url=server.url) as board:  # a dashboard session
        form = csrf_of((await board.get("/ui/login")).text)
        signed_in = await board.post(
            "/ui/login",
            data={
                "csrf": form,
                "accountId": old["accountId"],
                "clientId": old["clientId"],
                "clientSecret": old["clientSecret"],
            },
        )
        assert signed_in.status_code == 303
        assert (await board.get("/ui/webhooks")).status_code == 200

        revoked = await asyncio.to_thread(
            run_cli, database.env(), "accounts", "revoke-key", old["clientId"]
        )
        assert revoked.returncode == 0, revoked.stderr
        assert (await board.get("/ui/webhooks")).status_code == 303  # back to sign-in
        refused = await board.post("/token", json=old)
        assert refused.status_code == 401
        assert (await board.post("/token", json=new)).status_code == 200

    again = await asyncio.to_thread(
        run_cli, database.env(), "accounts", "revoke-key", old["clientId"]
    )
    assert again.returncode == 1 and "no API key" in again.stdout
    unknown = await asyncio.to_thread(run_cli, database.env(), "accounts", "add-key", "not-an-id")
    assert unknown.returncode == 2
