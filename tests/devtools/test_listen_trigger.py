"""``hookline listen`` and ``hookline trigger`` as a developer runs them, against a live server."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from typing import Any

import httpx

from hookline.cli.devtools import choose_events, trigger_body

CLI = [sys.executable, "-m", "hookline.cli.main"]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def new_account(env: dict[str, str]) -> dict[str, str]:
    result = await asyncio.to_thread(run_cli, env, "accounts", "create", "dev", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_env(base: dict[str, str], key: dict[str, str], server_url: str) -> dict[str, str]:
    return {
        **base,
        "HOOKLINE_ACCOUNT_ID": key["accountId"],
        "HOOKLINE_CLIENT_ID": key["clientId"],
        "HOOKLINE_CLIENT_SECRET": key["clientSecret"],
        "HOOKLINE_URL": server_url,
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }


class Listen:
    """A ``hookline listen`` subprocess whose output is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> Listen:
        process = await asyncio.create_subprocess_exec(
            *CLI,
            "listen",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process)

    async def wait_for_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read output until a line matches ``pattern`` (already-read lines count too)."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match

        async def read() -> re.Match[str]:
            assert self.process.stdout is not None
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError("listen exited; output:\n" + "\n".join(self.lines))
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if match := regex.search(line):
                    return match

        return await asyncio.wait_for(read(), timeout)

    async def stop(self, signum: int = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), 30)
        self.lines.extend(rest.decode(errors="replace").splitlines())
        return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def account_webhooks(server_url: str, key: dict[str, str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server_url) as http:
        token = (await http.post("/token", json=key)).json()["access_token"]
        response = await http.get("/webhooks", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        return response.json()


async def test_listen_verifies_prints_forwards_and_cleans_up(
    database: Any,
    live_server: Any,
    receiver: Any,
) -> None:
    server = live_server()
    key = await new_account(database.env())
    env = cli_env(database.env(), key, server.url)
    listen = await Listen.start(
        env,
        "--events",
        "account.connection.created,account.flow.enabled",
        "--forward-to",
        f"{receiver.url}/forwarded",
    )
    try:
        ready = await listen.wait_for_line(
            r"Ready! listening on (http://127\.0\.0\.1:\d+/\S+) for 2 event type\(s\), "
            r"forwarding to"
        )
        listen_url = ready.group(1)
        registered = await account_webhooks(server.url, key)
        assert sorted((w["event"], w["url"], w["status"]) for w in registered) == [
            ("account.connection.created", listen_url, "active"),
            ("account.flow.enabled", listen_url, "active"),
        ]

        result = await asyncio.to_thread(
            run_cli,
            env,
            "trigger",
            "account.connection.created",
            "--consumer",
            "0192f3c4-0000-7000-8000-000000000001",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 delivery(ies) queued" in result.stdout

        line = await listen.wait_for_line(
            r"verified account\.connection\.created "
            r"webhook-id=(\S+)"
        )
        forwarded = (await receiver.wait_for(1))[0]
        assert forwarded.path == "/forwarded"
        body = json.loads(forwarded.body)
        assert body["event"] == "account.connection.created"
        assert body["consumerid"] == "0192f3c4-0000-7000-8000-000000000001"
        assert body["accountid"] == key["accountId"]
        assert body["connectionid"] == "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f"
        assert forwarded.headers["webhook-id"] == line.group(1)
        assert forwarded.headers["X-Chift-Signature"]
        assert forwarded.headers["webhook-signature"].startswith("v1,")
        assert forwarded.headers["Content-Type"] == "application/json"
        await listen.wait_for_line(r"-> forwarded to .*/forwarded: 200")

        # A request that hookline did not sign is refused with the reason, and not forwarded.
        async with httpx.AsyncClient() as http:
            forged = await http.post(
                listen_url,
                content=forwarded.body,
                headers={
                    **{
                        k: v
                        for k, v in forwarded.headers.items()
                        if k.lower() not in ("host", "content-length")
                    },
                    "X-Chift-Signature": "0" * 64,
                },
            )
        assert forged.status_code == 400
        await listen.wait_for_line(r"REJECTED webhook-id=.*X-Chift-Signature does not match")
        assert len(receiver.requests) == 1

        code = await listen.stop(signal.SIGINT)
        assert code == 0, "\n".join(listen.lines)
        assert "removed 2 of 2 temporary webhook(s)" in listen.lines
        assert await account_webhooks(server.url, key) == []
    finally:
        listen.kill()


async def test_listen_removes_its_webhooks_on_sigterm_too(database: Any, live_server: Any) -> None:
    server = live_server()
    key = await new_account(database.env())
    env = cli_env(database.env(), key, server.url)
    listen = await Listen.start(env)  # every non-POS event type by default
    try:
        await listen.wait_for_line(r"Ready! listening on \S+ for 11 event type\(s\)")
        assert len(await account_webhooks(server.url, key)) == 11
        assert await listen.stop(signal.SIGTERM) == 0
        assert "removed 11 of 11 temporary webhook(s)" in listen.lines
        assert await account_webhooks(server.url, key) == []
    finally:
        listen.kill()


async def test_listen_cleans_up_when_registration_fails_halfway(
    database: Any, live_server: Any
) -> None:
    server = live_server()
    key = await new_account(database.env())
    env = cli_env(database.env(), key, server.url)
    # 9999 is no integration: the POS webhook (second) is refused after the first exists.
    listen = await Listen.start(
        env, "--events", "account.connection.up,pos.order.updated", "--integration-id", "9999"
    )
    try:
        code = await asyncio.wait_for(listen.process.wait(), 30)
        assert listen.process.stdout is not None
        listen.lines = (await listen.process.stdout.read()).decode().splitlines()
        assert code == 1
        assert any("Unknown integrationid 9999" in line for line in listen.lines)
        assert "removed 1 of 1 temporary webhook(s)" in listen.lines
        assert await account_webhooks(server.url, key) == []
    finally:
        listen.kill()


async def test_trigger_reports_mistakes_plainly(database: Any, live_server: Any) -> None:
    server = live_server()
    key = await new_account(database.env())
    env = cli_env(database.env(), key, server.url)
    unknown = await asyncio.to_thread(run_cli, env, "trigger", "no.such.event")
    assert unknown.returncode == 2
    assert "unknown event type" in unknown.stdout
    pos = await asyncio.to_thread(run_cli, env, "trigger", "pos.order.completed")
    assert pos.returncode == 2
    assert "needs --integration-id" in pos.stdout
    nothing = await asyncio.to_thread(run_cli, env, "trigger", "account.flow.executed")
    assert nothing.returncode == 0, nothing.stdout
    assert "0 delivery(ies) queued" in nothing.stdout
    assert "no active webhook of this account matches" in nothing.stdout
    wrong = await asyncio.to_thread(
        run_cli, {**env, "HOOKLINE_CLIENT_SECRET": "nope"}, "trigger", "account.flow.executed"
    )
    assert wrong.returncode == 1
    assert "HTTP 401: Invalid credentials" in wrong.stdout
    missing = await asyncio.to_thread(
        run_cli,
        {k: v for k, v in env.items() if k != "HOOKLINE_CLIENT_ID"},
        "trigger",
        "account.flow.executed",
    )
    assert missing.returncode == 2
    assert "missing credentials" in missing.stdout


def test_trigger_body_is_the_catalog_example_without_server_fields() -> None:
    body = trigger_body("pos.order.completed", consumer_id=None, integration_id=2001)
    assert body == {
        "event": "pos.order.completed",
        "consumerid": "0192f3c4-5b6a-7c8d-9e0f-1a2b3c4d5e70",
        "order_id": "ord-10042",
        "device_id": "pos-2",
        "customer_id": None,
        "location_id": "loc-1",
        "updated_at": "2026-11-26T10:15:00Z",
        "integrationid": 2001,
    }
    assert trigger_body("account.connection.up", consumer_id="c", integration_id=None) == {
        "event": "account.connection.up",
        "consumerid": "c",
        "connectionid": "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f",
    }


def test_choose_events_skips_pos_without_an_integration() -> None:
    assert len(choose_events(None, None)) == 11
    assert len(choose_events(None, 2001)) == 13
    assert choose_events("account.connection.up, account.connection.up", None) == [
        "account.connection.up"
    ]
