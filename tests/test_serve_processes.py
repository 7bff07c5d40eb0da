"""``hookline serve --processes N``: several processes on one port (PostgreSQL), each
answering requests and delivering; SIGTERM stops them all; SQLite refuses N > 1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from hookline.bootstrap import prepare_database
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from tests.conftest import Backend
from tests.delivery_api.helpers import connection_event
from tests.support import LiveServer

PID = re.compile(r'^hookline_process_info\{pid="(\d+)"\} 1\.0$', re.MULTILINE)


def test_sqlite_refuses_several_processes_in_one_line(tmp_path: Path) -> None:
    env = Backend(tmp_path, "sqlite").env()
    done = subprocess.run(
        [sys.executable, "-m", "hookline.cli.main", "serve", "--processes", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: --processes 2 needs PostgreSQL: SQLite takes one writer")
    assert not (tmp_path / "data" / "hookline.db").exists()  # refused before anything else


def _pids_answering(url: str, wanted: int, attempts: int = 400) -> dict[int, int]:
    """Answers per process, each request on a new connection (the kernel hands new
    connections to whichever process accepts first), until ``wanted`` processes answered."""
    seen: dict[int, int] = {}
    for _ in range(attempts):
        response = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        (pid,) = PID.findall(response.text)
        seen[int(pid)] = seen.get(int(pid), 0) + 1
        if len(seen) >= wanted and sum(seen.values()) >= 20:
            break
    return seen


async def test_two_postgres_processes_share_the_port_deliver_and_stop_on_sigterm(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "processes", now=rt.clock.now())
    await rt.db.dispose()
    server = LiveServer(database.env(), args=("--processes", "2")).start(timeout=90)
    try:
        seen = await asyncio.to_thread(_pids_answering, server.url, 2)
        assert len(seen) == 2, seen
        assert server.process.pid not in seen  # the supervisor serves nothing itself
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            token = (
                await http.post(
                    "/token",
                    json={
                        "accountId": str(key.account_id),
                        "clientId": key.client_id,
                        "clientSecret": key.client_secret,
                    },
                )
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            hook = await http.post(
                "/webhooks",
                json={"event": "account.connection.created", "url": receiver.url + "/p"},
                headers=auth,
            )
            assert hook.status_code == 200, hook.text
            assert (await http.get("/readyz")).status_code == 200
            sent = {str(uuid.uuid4()) for _ in range(30)}
            for connection in sent:  # one connection each: both processes take some
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as one:
                    response = await one.post(
                        "/events", json=connection_event(connectionid=connection), headers=auth
                    )
                    assert response.status_code == 202, response.text
        arrived = await receiver.wait_for(len(sent), timeout=60)
        assert {json.loads(r.body)["connectionid"] for r in arrived} == sent
    except BaseException:
        print(server.stop())
        raise
    process = server.process
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    server.process = None
    assert process.returncode == 0, output.decode(errors="replace")
    for pid in seen:  # every child stopped with it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} still runs after SIGTERM")
    assert b"Traceback" not in output, output.decode(errors="replace")
    await database.drop()


def _read_until(
    process: subprocess.Popen[bytes], marker: bytes, count: int, timeout: float
) -> bytes:
    """The server's output until ``marker`` appeared ``count`` times (reading its pipe)."""
    import select
    import time

    seen = b""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while seen.count(marker) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} x{count} not in:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, f"output ended:\n{seen.decode(errors='replace')}"
            seen += chunk
    return seen


async def test_sigterm_lets_an_in_flight_request_finish_with_two_processes(
    postgres_backend: str, tmp_path: Path
) -> None:
    """A request waits in the database (a third transaction holds its idempotency key) when
    the supervisor gets SIGTERM: both children start shutting down, the request is still
    answered (202, committed) once the holder lets go, and everything exits cleanly."""
    import asyncpg

    from hookline.store.listen import plain_postgres_url
    from tests.delivery_api.test_batch import waiting_on_locks

    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "sigterm", now=rt.clock.now())
    url = plain_postgres_url(rt.db.url)
    server = LiveServer(database.env(HOOKLINE_LOG_LEVEL="info"), args=("--processes", "2"))
    server.start(timeout=90)
    holder = await asyncpg.connect(url, server_settings={"search_path": database.schema or ""})
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            credentials = {
                "accountId": str(key.account_id),
                "clientId": key.client_id,
                "clientSecret": key.client_secret,
            }
            token = (await http.post("/token", json=credentials)).json()["access_token"]
            held = holder.transaction()
            await held.start()
            await holder.execute(
                "INSERT INTO events (id, account_id, event_type, payload, idempotency_key, "
                "created_at) VALUES ($1, $2, 'account.connection.created', '{}', 'held', now())",
                uuid.uuid4(),
                key.account_id,
            )
            in_flight = asyncio.ensure_future(
                http.post(
                    "/events",
                    json=connection_event(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "x-chift-client-requestid": "held",
                    },
                )
            )
            await waiting_on_locks(url, 1)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_read_until, server.process, b"Shutting down", 2, 30)
            assert not in_flight.done()
            await held.rollback()
            response = await in_flight
        assert response.status_code == 202, response.text
        assert "x-idempotent-replayed" not in response.headers
        server.process.wait(timeout=60)
        assert server.process.returncode == 0
        async with rt.db.read() as conn:
            from sqlalchemy import select

            from hookline.store.tables import events

            stored = (await conn.execute(select(events.c.id))).scalars().all()
        assert [str(event_id) for event_id in stored] == [response.json()["eventid"]]
    finally:
        await holder.close()
        server.stop()
        await rt.db.dispose()
        await database.drop()
