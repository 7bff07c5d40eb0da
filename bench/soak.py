"""Soak benchmark: a steady event rate for minutes, with retention purging all along.

    .venv/bin/python -m bench.soak --backend sqlite|postgresql [--minutes 10] [--rate 500]
    .venv/bin/python -m bench.soak --backend sqlite|postgresql --bytes-per-event 20000

A real ``hookline serve`` subprocess gets ``POST /events`` at ``--rate`` for ``--minutes``;
every event goes to two webhooks, each on its own loopback receiver (its own process, so
its own destination): ``/steady`` always answers 200, ``/flaky`` answers 500 to every tenth
request (retried 5 s later, as the default schedule says; ``--retry-schedule`` sets another,
and the ``retrying`` column counts the deliveries waiting for a retry: each keeps its rows,
so storage levels off only once the schedule's longest wait is full). ``--same-destination``
puts both on one receiver: every 500 then takes the shared destination back to its slow
lanes (4, one more per success), which caps the rate the steady webhook can be sent at. Retention is
``--retention-seconds`` (default 180, through the user-facing ``HOOKLINE_RETENTION_SECONDS``),
so purging runs during the soak. Every
``--report-seconds`` (default 60) one row: database size (SQLite: file + WAL; PostgreSQL: the
schema's tables with indexes and TOAST), the server's RSS, the queue depth, emit→receive
p50/p99 of ``/steady`` over that interval, rows purged so far (the server's ``/metrics``),
the share of a core the server used over the interval and the machine's load average (on a
shared machine a starved server falls behind and its queue and latency grow: read those
rows against the CPU columns). Done when size and RSS plateau once the retention window is
full and p99 does not drift. The table goes to ``bench/results/soak-<backend>.md``.

``--bytes-per-event N`` measures storage instead: N events, each with one delivery and one
attempt log (queued as ``emit`` writes them, then sent by the real worker), and the bytes
they occupy divided by N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import uvloop
from sqlalchemy import func, insert, select, text

from bench.delivery import (
    EVENT,
    POSTGRES_URL,
    ROOT,
    ReceiverProcess,
    Target,
    free_port,
    make_webhook,
    percentiles,
    queue_backlog,
    target,
    wait_http,
)
from hookline.bootstrap import prepare_database
from hookline.delivery.worker import DeliveryWorker
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import accounts, delivery_queue

TABLES = ("events", "deliveries", "webhook_logs", "delivery_queue")


# --- measurements -------------------------------------------------------------------------


async def database_bytes(tgt: Target, rt: Runtime) -> int:
    """The database's size on disk: SQLite file + WAL, or the schema's tables (PostgreSQL)."""
    if tgt.backend == "sqlite":
        path = Path(tgt.data_dir) / "hookline.db"
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    async with rt.db.read() as conn:
        size = await conn.execute(
            text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind = 'r'"
            ),
            {"schema": tgt.schema},
        )
        return int(size.scalar_one())


async def used_bytes(tgt: Target, rt: Runtime) -> dict[str, int]:
    """Bytes holding rows of the delivery tables, per table (indexes included): SQLite's used
    pages (``dbstat``), PostgreSQL's relations (after a plain VACUUM, as autovacuum leaves
    them)."""
    if tgt.backend == "sqlite":
        async with rt.db.read() as conn:
            rows: Any = await conn.exec_driver_sql(
                "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s "
                "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1"
            )
            by_table = {str(name): int(size) for name, size in rows}
        return {table: by_table.get(table, 0) for table in TABLES}
    raw = await asyncpg.connect(POSTGRES_URL)
    try:
        sizes = {}
        for table in TABLES:
            await raw.execute(f'VACUUM "{tgt.schema}".{table}')
            sizes[table] = int(
                await raw.fetchval(
                    "SELECT pg_total_relation_size($1::regclass)", f'"{tgt.schema}".{table}'
                )
            )
        return sizes
    finally:
        await raw.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def purged_rows(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(base + "/metrics") as response:
        body = await response.text()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("hookline_retention_purged_rows_total{")
        )
    )


async def take(http: aiohttp.ClientSession, receiver: ReceiverProcess) -> list[list[Any]]:
    async with http.post(receiver.url + "/_take") as response:
        rows: list[list[Any]] = await response.json()
        return rows


async def steady(
    rate: float, seconds: float, send: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Start ``send()`` ``rate`` times a second for ``seconds``, on schedule (not waiting for
    the previous one), keeping only the requests in flight."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    in_flight: set[asyncio.Task[None]] = set()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


# --- the soak -----------------------------------------------------------------------------


async def soak(
    args: argparse.Namespace, receiver: ReceiverProcess, flaky: ReceiverProcess
) -> list[dict[str, Any]]:
    connector = aiohttp.TCPConnector(limit=400)
    async with target(args.backend) as tgt, aiohttp.ClientSession(connector=connector) as http:
        rt = Runtime.create(tgt.settings())
        await prepare_database(rt)
        async with rt.db.transaction() as conn:
            key = await create_account(conn, "soak", now=rt.clock.now())
        await make_webhook(rt, key.account_id, receiver.url + "/steady")
        await make_webhook(rt, key.account_id, flaky.url + "/flaky")
        port = free_port()
        env = {
            **tgt.env(),
            "HOOKLINE_RETENTION_SECONDS": str(args.retention_seconds),
            "HOOKLINE_RETENTION_INTERVAL_SECONDS": str(args.purge_seconds),
        }
        if args.retry_schedule:
            env["HOOKLINE_RETRY_SCHEDULE"] = args.retry_schedule
        server = subprocess.Popen(
            [sys.executable, "-m", "hookline.cli.main", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        rows: list[dict[str, Any]] = []
        try:
            await wait_http(base + "/healthz")
            credentials = {
                "accountId": str(key.account_id),
                "clientId": key.client_id,
                "clientSecret": key.client_secret,
            }
            async with http.post(base + "/token", json=credentials) as response:
                token = (await response.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            sent: dict[str, float] = {}
            errors = 0

            async def emit_one() -> None:
                nonlocal errors
                connection = str(uuid.uuid4())
                payload = {
                    "event": EVENT,
                    "consumerid": str(uuid.uuid4()),
                    "connectionid": connection,
                }
                sent[connection] = time.time()
                try:
                    async with http.post(base + "/events", json=payload, headers=auth) as resp:
                        await resp.read()
                        if resp.status != 202:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

            receivers = [receiver] if flaky is receiver else [receiver, flaky]
            for each in receivers:
                await take(http, each)
            started = time.monotonic()
            last_at, last_cpu = started, cpu_seconds(server.pid)
            load = asyncio.create_task(steady(args.rate, args.minutes * 60, emit_one))
            while not load.done():
                await asyncio.wait({load}, timeout=args.report_seconds)
                arrived = [row for each in receivers for row in await take(http, each)]
                latencies = [
                    (at - sent.pop(conn)) * 1000
                    for at, conn, path in arrived
                    if path == "/steady" and conn in sent
                ]
                async with rt.db.read() as conn:
                    depth = (
                        await conn.execute(select(func.count()).select_from(delivery_queue))
                    ).scalar_one()
                    retrying = (
                        await conn.execute(
                            select(func.count()).where(
                                delivery_queue.c.attempt > 0,
                                delivery_queue.c.lease_owner.is_(None),
                            )
                        )
                    ).scalar_one()
                p50, p99 = percentiles(latencies)[:2] if len(latencies) > 1 else (0.0, 0.0)
                at, cpu = time.monotonic(), cpu_seconds(server.pid)
                cpu_share, last_at, last_cpu = (cpu - last_cpu) / (at - last_at), at, cpu
                row = {
                    "minute": (time.monotonic() - started) / 60,
                    "db_mb": await database_bytes(tgt, rt) / 1e6,
                    "rss_mb": rss_bytes(server.pid) / 1e6,
                    "queue": depth,
                    "retrying": retrying,
                    "p50": p50,
                    "p99": p99,
                    "received": len(latencies),
                    "flaky_ok": sum(1 for _, _, path in arrived if path == "/flaky"),
                    "purged": await purged_rows(http, base),
                    "errors": errors,
                    "cpu": cpu_share * 100,
                    "load": os.getloadavg()[0],
                }
                rows.append(row)
                print(_format_row(row), flush=True)
            await load
        finally:
            server.terminate()
            server.wait(timeout=30)
            await rt.db.dispose()
        return rows


def _format_row(row: dict[str, Any]) -> str:
    return (
        f"| {row['minute']:.1f} | {row['db_mb']:.1f} | {row['rss_mb']:.0f} | {row['queue']} | "
        f"{row['retrying']} | "
        f"{row['p50']:.1f} | {row['p99']:.1f} | {row['received']} | {row['flaky_ok']} | "
        f"{row['purged']} | {row['errors']} | {row['cpu']:.0f} | {row['load']:.1f} |"
    )


def _header(args: argparse.Namespace) -> list[str]:
    return [
        f"# Soak: {args.backend}, {args.rate:g} events/s for {args.minutes:g} min",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs; two webhooks "
        f"(one failing 10 %); retention {args.retention_seconds:g} s, purge every "
        f"{args.purge_seconds:g} s. Command: `.venv/bin/python -m bench.soak --backend "
        f"{args.backend} --minutes {args.minutes:g} --rate {args.rate:g} --retention-seconds "
        f"{args.retention_seconds:g} --purge-seconds {args.purge_seconds:g}"
        f"{' --same-destination' if args.same_destination else ''}"
        f"{f' --retry-schedule {args.retry_schedule}' if args.retry_schedule else ''}`; load "
        "average at the "
        f"start {os.getloadavg()[0]:.1f}.",
        "",
        "| minute | DB MB | RSS MB | queue | retrying | p50 ms | p99 ms | received | flaky ok | "
        "purged rows | errors | server CPU % | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]


def write_soak_report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    report = "\n".join([*_header(args), *(_format_row(row) for row in rows)]) + "\n"
    (ROOT / "bench" / "results" / f"soak-{args.backend}.md").write_text(report)
    return report


# --- bytes per event ----------------------------------------------------------------------


async def bytes_per_event(backend: str, n: int, receiver: ReceiverProcess) -> float:
    async with target(backend) as tgt:
        rt = Runtime.create(tgt.settings(delivery_poll_seconds=1.0))
        await prepare_database(rt)
        account = new_id()
        async with rt.db.transaction() as conn:
            await conn.execute(
                insert(accounts).values(id=account, name="bytes", created_at=rt.clock.now())
            )
        hook = await make_webhook(rt, account, receiver.url + "/bytes")
        empty = await used_bytes(tgt, rt)
        await queue_backlog(rt, account, hook, n)
        worker, stop = DeliveryWorker(rt), asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await worker.wait_recorded(n, timeout=600)
        stop.set()
        await task
        full = await used_bytes(tgt, rt)
        await rt.db.dispose()
    per_table = {table: (full[table] - empty[table]) / n for table in TABLES}
    per_event = sum(per_table.values())
    print(
        f"[{backend}] {per_event:,.0f} bytes per event (event + delivery + attempt log, "
        f"indexes included; {n} events): "
        + ", ".join(f"{table} {size:,.0f}" for table, size in per_table.items()),
        flush=True,
    )
    return per_event


async def main(args: argparse.Namespace) -> None:
    receiver = await ReceiverProcess().ready()
    flaky = receiver
    try:
        if args.bytes_per_event:
            await bytes_per_event(args.backend, args.bytes_per_event, receiver)
            return
        if not args.same_destination:
            flaky = await ReceiverProcess().ready()
        print("\n".join(_header(args)), flush=True)
        rows = await soak(args, receiver, flaky)
        print(write_soak_report(args, rows))
    finally:
        receiver.stop()
        if flaky is not receiver:
            flaky.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0, help="events/s (two deliveries each)")
    parser.add_argument("--retention-seconds", type=float, default=180.0)
    parser.add_argument("--purge-seconds", type=float, default=15.0, help="purge interval")
    parser.add_argument("--report-seconds", type=float, default=60.0)
    parser.add_argument(
        "--retry-schedule",
        default="",
        help="the server's HOOKLINE_RETRY_SCHEDULE (default: the product's, up to 24 h)",
    )
    parser.add_argument(
        "--same-destination",
        action="store_true",
        help="both webhooks on one receiver (one destination: each 500 of the failing one "
        "takes the shared destination back to its slow lanes)",
    )
    parser.add_argument(
        "--bytes-per-event", type=int, default=0, help="measure storage for N events instead"
    )
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
