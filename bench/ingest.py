"""Ingest benchmark: how fast events get IN, run by ``python -m bench.delivery`` beside the
drain and latency runs (same run, same receiver, each backend; PostgreSQL with
``--processes 1`` and ``2``).

(a) accept: a real ``hookline serve --no-worker`` subprocess, an aiohttp client keeping
    ``--ingest-concurrency`` requests in flight for ``--ingest-seconds`` per route:
    - ``POST /_bench/noop``: a do-nothing route (reads the body, answers 202) mounted in the
      same app only when ``HOOKLINE_BENCH_ROUTES=1``: same uvicorn settings, same
      processes, same client, same body. It is the ceiling for the next row;
    - ``POST /events`` (an event no webhook subscribes to: accept only);
    - ``POST /events/batch`` with 100 and with 1000 events a request (one webhook: each
      event also queues its delivery), fewer requests in flight (``BATCH_CONCURRENCY``).
(b) end to end: a fresh database, ``hookline serve`` with its worker(s), one webhook to the
    loopback receiver; ``--e2e-events`` events sent in batches of 1000; the rate counts
    from the first request sent to the last delivery received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench.delivery import (
    ROOT,
    ReceiverProcess,
    Target,
    free_port,
    make_webhook,
    target,
    wait_http,
)
from hookline.bootstrap import prepare_database
from hookline.delivery.emit import build_body
from hookline.platform.accounts import NewApiKey, create_account
from hookline.runtime import Runtime

HOOKED = "account.connection.deleted"  # the event the benchmark's webhook subscribes to
UNHOOKED = "account.connection.created"  # no webhook: accept only
BATCH_CONCURRENCY = 4
E2E_BATCH = 1000
_PID = re.compile(r'hookline_process_info\{pid="(\d+)"\}')


class Server:
    """``hookline serve`` in a subprocess (``--processes N``, with or without workers)."""

    def __init__(self, tgt: Target, processes: int, *, worker: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes = processes
        command = [sys.executable, "-m", "hookline.cli.main", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--processes", str(processes)]
        if not worker:
            command.append("--no-worker")
        self.process = subprocess.Popen(
            command,
            env={**tgt.env(), "HOOKLINE_BENCH_ROUTES": "1"},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 120.0) -> Server:
        """Up, and every process answering (each scrape on a new connection)."""
        await wait_http(self.base + "/healthz", timeout)
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while len(seen) < self.processes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {self.processes} processes answered")
            async with http.get(self.base + "/metrics", headers={"Connection": "close"}) as r:
                seen.update(_PID.findall(await r.text()))
            await asyncio.sleep(0.05)
        return self

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.asynccontextmanager
async def serving(
    tgt: Target, processes: int, *, worker: bool, http: aiohttp.ClientSession
) -> AsyncIterator[Server]:
    server = Server(tgt, processes, worker=worker)
    try:
        yield await server.ready(http)
    finally:
        server.stop()


async def prepared(tgt: Target, receiver: ReceiverProcess) -> NewApiKey:
    """A migrated database with an account and one webhook (``HOOKED``) to the receiver."""
    rt = Runtime.create(tgt.settings())
    await prepare_database(rt)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "bench", now=rt.clock.now())
    await make_webhook(rt, key.account_id, receiver.url + "/ingest")
    await rt.db.dispose()
    return key


async def bearer(http: aiohttp.ClientSession, base: str, key: NewApiKey) -> dict[str, str]:
    credentials = {
        "accountId": str(key.account_id),
        "clientId": key.client_id,
        "clientSecret": key.client_secret,
    }
    async with http.post(base + "/token", json=credentials) as response:
        token = (await response.json())["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def event_body(event: str) -> dict[str, Any]:
    body = build_body(
        account_id=uuid.uuid4(),
        event=event,
        consumer_id=uuid.uuid4(),
        created=0,
        fields={"connectionid": str(uuid.uuid4()), "status": "active"},
    )
    body = {k: v for k, v in body.items() if k not in ("accountid", "created")}
    if event != UNHOOKED:
        body.pop("status")
    return body


def batch_body(size: int) -> bytes:
    return json.dumps({"events": [event_body(HOOKED) for _ in range(size)]}).encode()


async def closed_loop(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[float, int]:
    """Requests/s with ``concurrency`` in flight (one keep-alive connection each) for
    ``seconds``, after a short warm-up; and how many answers were not 202."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    errors = 0
    done = 0
    measuring = False
    stop_at = float("inf")

    async def lane(http: aiohttp.ClientSession) -> None:
        nonlocal errors, done
        while time.perf_counter() < stop_at:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 202:
                    errors += 1
            if measuring:
                done += 1

    async with aiohttp.ClientSession(connector=connector) as http:
        warm_until = time.perf_counter() + min(1.0, seconds / 3)
        stop_at = warm_until + seconds
        lanes = [asyncio.create_task(lane(http)) for _ in range(concurrency)]
        await asyncio.sleep(max(0.0, warm_until - time.perf_counter()))
        measuring, started = True, time.perf_counter()
        await asyncio.gather(*lanes)
        elapsed = time.perf_counter() - started
    return done / elapsed, errors


async def accept_rates(
    backend: str, receiver: ReceiverProcess, processes: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        key = await prepared(tgt, receiver)
        async with serving(tgt, processes, worker=False, http=http) as server:
            headers = await bearer(http, server.base, key)
            single = json.dumps(event_body(UNHOOKED)).encode()
            noop, noop_errors = await closed_loop(
                server.base + "/_bench/noop", single, headers, concurrency, seconds
            )
            events, event_errors = await closed_loop(
                server.base + "/events", single, headers, concurrency, seconds
            )
            rates: dict[str, Any] = {"noop": noop, "single": events, "processes": processes}
            errors = noop_errors + event_errors
            for size in (100, 1000):
                per_request, batch_errors = await closed_loop(
                    server.base + "/events/batch",
                    batch_body(size),
                    headers,
                    BATCH_CONCURRENCY,
                    seconds,
                )
                rates[f"batch{size}"] = per_request * size
                errors += batch_errors
    rates["errors"] = errors
    print(
        f"[{backend} x{processes}] accept: do-nothing route {noop:,.0f}/s, POST /events "
        f"{events:,.0f}/s ({events / noop:.0%}); batches of 100 {rates['batch100']:,.0f} "
        f"events/s, of 1000 {rates['batch1000']:,.0f} events/s; errors {errors}",
        flush=True,
    )
    return rates


async def end_to_end(
    backend: str, receiver: ReceiverProcess, processes: int, n: int
) -> dict[str, Any]:
    """First batch sent -> last delivery received, through ``hookline serve`` + worker(s)."""
    batches = max(1, n // E2E_BATCH)
    n = batches * E2E_BATCH
    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        key = await prepared(tgt, receiver)
        async with serving(tgt, processes, worker=True, http=http) as server:
            headers = await bearer(http, server.base, key)
            body = batch_body(E2E_BATCH)
            await receiver.reset(http)
            remaining = iter(range(batches))
            errors = 0

            async def lane() -> None:
                nonlocal errors
                for _ in remaining:
                    async with http.post(
                        server.base + "/events/batch", data=body, headers=headers
                    ) as response:
                        await response.read()
                        errors += response.status != 202

            started = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(BATCH_CONCURRENCY)))
            accepted = time.perf_counter() - started
            await receiver.wait_count(http, n - errors * E2E_BATCH, timeout=600)
            elapsed = time.perf_counter() - started
            received = await receiver.count(http)
            await receiver.reset(http)
    rate = n / elapsed
    print(
        f"[{backend} x{processes}] end to end through batches: {n:,} events in "
        f"{elapsed:.2f} s = {rate:,.0f}/s (all accepted after {accepted:.2f} s); received "
        f"{received}; errors {errors}",
        flush=True,
    )
    return {
        "n": n,
        "seconds": elapsed,
        "rate": rate,
        "accepted_s": accepted,
        "received": received,
        "errors": errors,
        "processes": processes,
    }


async def ingest(
    backend: str,
    receiver: ReceiverProcess,
    *,
    seconds: float,
    concurrency: int,
    e2e_events: int,
    processes: list[int],
) -> list[dict[str, Any]]:
    """Every ingest row of one backend: one entry per process count (SQLite: 1 only)."""
    rows = []
    for count in [1] if backend == "sqlite" else processes:
        row: dict[str, Any] = {"processes": count}
        if seconds:
            row["accept"] = await accept_rates(backend, receiver, count, seconds, concurrency)
        if e2e_events:
            row["e2e"] = await end_to_end(backend, receiver, count, e2e_events)
        rows.append(row)
    return rows


def report_lines(results: dict[str, dict[str, Any]], concurrency: int) -> list[str]:
    """The ingest tables of ``bench/results/latest.md``."""
    lines = [
        "",
        f"## Ingest: accept rate (`hookline serve --no-worker`, aiohttp client, {concurrency} "
        f"requests in flight; batches: {BATCH_CONCURRENCY})",
        "",
        "| backend | processes | do-nothing route | `POST /events` | ratio (target ≥ 90 %) "
        "| batch of 100 | batch of 1000 (target ≥ 50,000/s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, res in results.items():
        for row in res.get("ingest", []):
            a = row.get("accept")
            if a:
                lines.append(
                    f"| {backend} | {a['processes']} | {a['noop']:,.0f}/s | {a['single']:,.0f}/s"
                    f" | {a['single'] / a['noop']:.0%} | {a['batch100']:,.0f} events/s | "
                    f"{a['batch1000']:,.0f} events/s |"
                )
    lines += [
        "",
        "## Ingest: end to end through batches of 1000 (first request → last delivery)",
        "",
        "| backend | processes | events | events/s | drain rate (same run) "
        "| ratio (target ≥ 70 %) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, res in results.items():
        drain = res.get("drain", {}).get("hookline")
        for row in res.get("ingest", []):
            e = row.get("e2e")
            if e:
                ratio = f"{e['rate'] / drain:.0%}" if drain else "(no drain run)"
                drained = f"{drain:,.0f}/s" if drain else "-"
                lines.append(
                    f"| {backend} | {e['processes']} | {e['n']:,} | {e['rate']:,.0f}/s | "
                    f"{drained} | {ratio} |"
                )
    return lines
