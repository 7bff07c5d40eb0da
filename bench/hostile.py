"""Hostile-receiver benchmark: a healthy webhook's latency beside receivers that misbehave.

    .venv/bin/python -m bench.hostile --backend sqlite|postgresql|both [--seconds 60]
        [--rate 30] [--backlog 100000] [--grace 15] [--cases baseline,hang,six,backlog]

One account's healthy webhook gets ``--rate`` events/s (``emit()`` + the real worker in this
process, as the delivery benchmark's in-process test) and its receiver (bench/receiver.py, its
own process) timestamps arrivals. Beside it, in each case:

- **baseline**: nothing else;
- **hang**: another account's webhook, at the same rate, whose receiver reads each request
  and never answers;
- **six**: six hostile receivers in another account, each its own destination, all at the
  same rate: hang, trickled headers (one header line a second), trickled body (one byte a
  second), a 50 MB body, a gzip bomb (200 MB of zeros in ~200 KB), a chunked 500;
- **backlog**: another account with ``--backlog`` deliveries queued (default 100,000) to a
  slow but working receiver (250 ms per request). On PostgreSQL the backlog is vacuumed,
  analysed and checkpointed before the load starts (what autovacuum and the checkpointer do
  within the minute), so the case measures how the backlog is shared out, not its bulk write.

The hostile receivers run in their own process too (``--serve``). For the healthy webhook it
reports p50/p99 emit→receive latency and how many of its events were still undelivered
``--grace`` seconds after the load stopped. Targets (issue 18): p99 within 2x of the baseline
and 0 undelivered in every case. Results go to ``bench/results/hostile.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import uvloop
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from bench.delivery import (
    EVENT,
    ROOT,
    ReceiverProcess,
    free_port,
    make_webhook,
    paced,
    percentiles,
    queue_backlog,
    target,
)
from hookline.bootstrap import prepare_database
from hookline.delivery.emit import EventDraft, emit_draft, rehearse_emit
from hookline.delivery.worker import DeliveryWorker
from hookline.ids import new_id
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.store.tables import accounts

SIX = ("hang", "trickle_headers", "trickle_body", "big_body", "gzip_bomb", "chunked_500")
CASES = {
    "baseline": (),
    "hang": ("hang",),
    "six": SIX,
    "backlog": ("slow",),
    **{kind: (kind,) for kind in SIX},  # one hostile receiver alone, to find a culprit
}


# -- the hostile receivers (run in their own process with --serve) -----------------------


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request (head and Content-Length body); False at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return True


def _handler(kind: str, bomb: bytes) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _read_request(reader):
                if kind == "hang":
                    await asyncio.Event().wait()
                elif kind == "trickle_headers":
                    writer.write(b"HTTP/1.1 200 OK\r\n")
                    while True:
                        await asyncio.sleep(1.0)
                        writer.write(b"X-Trickle: 1\r\n")
                        await writer.drain()
                elif kind == "trickle_body":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while True:
                        await asyncio.sleep(1.0)
                        writer.write(b"x")
                        await writer.drain()
                elif kind == "big_body":
                    size = 50 * 1024 * 1024
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                    chunk = b"x" * (1024 * 1024)
                    for _ in range(50):
                        writer.write(chunk)
                        await writer.drain()
                elif kind == "gzip_bomb":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                        + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
                        + bomb
                    )
                    await writer.drain()
                elif kind == "chunked_500":
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n"
                        b"\r\n5\r\nerror\r\n0\r\n\r\n"
                    )
                    await writer.drain()
                elif kind == "slow":
                    await asyncio.sleep(0.25)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


async def serve(ports: dict[str, int]) -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    servers = [
        await asyncio.start_server(_handler(kind, bomb), "127.0.0.1", port, backlog=1024)
        for kind, port in ports.items()
    ]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


class HostileProcess:
    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.ports = {kind: free_port() for kind in kinds}
        spec = ",".join(f"{kind}={port}" for kind, port in self.ports.items())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.hostile", "--serve", spec],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )

    def ready(self) -> HostileProcess:
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError("hostile receivers did not start")
        return self

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.ports[kind]}/{kind}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def settle(rt: Runtime) -> None:
    """After queueing the backlog in bulk, do at once what autovacuum and the checkpointer
    would do in the next minute (PostgreSQL): the case measures how a backlog is shared out,
    not the one-off flush and vacuum of 300,000 freshly written rows, whose WAL flushes
    stalled every commit for up to 130 ms in the window (auto_explain, 2026-12-03)."""
    if rt.db.is_sqlite:
        return
    async with rt.db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE) delivery_queue, deliveries, events"))
        with contextlib.suppress(DBAPIError):  # CHECKPOINT needs a superuser or pg_checkpoint
            await conn.execute(text("CHECKPOINT"))


# -- one case ------------------------------------------------------------------------------


async def run_case(
    backend: str, case: str, receiver: ReceiverProcess, args: argparse.Namespace
) -> dict[str, Any]:
    kinds = CASES[case]
    hostile = HostileProcess(kinds).ready() if kinds else None
    try:
        async with target(backend) as tgt, aiohttp.ClientSession() as http:
            rt = Runtime.create(tgt.settings())
            await prepare_database(rt)
            healthy, other = new_id(), new_id()
            async with rt.db.transaction() as conn:
                for account in (healthy, other):
                    await conn.execute(
                        insert(accounts).values(id=account, name="bench", created_at=rt.clock.now())
                    )
            await make_webhook(rt, healthy, receiver.url + "/healthy")
            hooks = {}
            if hostile is not None:
                hooks = {kind: await make_webhook(rt, other, hostile.url(kind)) for kind in kinds}
            if case == "backlog":
                await queue_backlog(rt, other, hooks["slow"], args.backlog)
                await settle(rt)
            await receiver.reset(http)
            await rt.db.connect_ahead(warm=rehearse_emit)
            worker = DeliveryWorker(rt)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            sent: dict[str, float] = {}

            async def emit_to(account: uuid.UUID, record: bool) -> None:
                connection = str(uuid.uuid4())
                if record:
                    sent[connection] = time.time()
                async with rt.db.transaction() as conn:
                    await emit_draft(
                        conn,
                        EventDraft(
                            account_id=account,
                            event=EVENT,
                            consumer_id=new_id(),
                            fields={"connectionid": connection},
                            now=rt.clock.now(),
                        ),
                    )

            loads = [paced(args.rate, args.seconds, lambda i: emit_to(healthy, True))]
            if case != "baseline" and case != "backlog":
                loads.append(paced(args.rate, args.seconds, lambda i: emit_to(other, False)))
            await asyncio.gather(*loads)
            total = len(sent)
            with contextlib.suppress(TimeoutError):
                await receiver.wait_count(http, total, timeout=args.grace)
            rows = await receiver.dump(http)
            stop.set()
            await task
            await rt.db.dispose()
    finally:
        if hostile is not None:
            hostile.stop()
    lat = [(at - sent[conn]) * 1000 for at, conn in rows if conn in sent]
    received = len({conn for _, conn in rows if conn in sent})
    p50, p99, worst = percentiles(lat) if len(lat) >= 2 else (float("nan"),) * 3
    result = {
        "case": case,
        "sent": total,
        "undelivered": total - received,
        "p50": p50,
        "p99": p99,
        "max": worst,
    }
    print(
        f"[{backend}] {case}: healthy p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms; "
        f"{total - received} of {total} undelivered after {args.grace:g} s",
        flush=True,
    )
    return result


def write_report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    lines = [
        "# Hostile-receiver benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; command: "
        f"`.venv/bin/python -m bench.hostile --backend {args.backend} --seconds {args.seconds:g} "
        f"--rate {args.rate:g} --backlog {args.backlog} --grace {args.grace:g}`.",
        "",
        "| backend | case | healthy events | p50 | p99 | p99 / baseline (target ≤ 2x) "
        "| undelivered (target 0) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in results.items():
        base = next((r["p99"] for r in rows if r["case"] == "baseline"), None)
        for r in rows:
            ratio = f"{r['p99'] / base:.1f}x" if base else "-"
            lines.append(
                f"| {backend} | {r['case']} | {r['sent']} | {r['p50']:.1f} ms | "
                f"{r['p99']:.1f} ms | {ratio} | {r['undelivered']} |"
            )
    report = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "hostile.md").write_text(report)
    return report


async def main(args: argparse.Namespace) -> None:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(sorted(unknown))}")
    receiver = await ReceiverProcess().ready()
    freeze_startup_objects()
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for backend in backends:
            results[backend] = [await run_case(backend, case, receiver, args) for case in cases]
    finally:
        receiver.stop()
    print(write_report(results, args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration per case")
    parser.add_argument("--rate", type=float, default=30.0, help="events/s per account")
    parser.add_argument("--backlog", type=int, default=100_000, help="case backlog's size")
    parser.add_argument(
        "--grace", type=float, default=15.0, help="seconds to wait for stragglers after the load"
    )
    parser.add_argument(
        "--cases",
        default="baseline,hang,six,backlog",
        help="comma-separated cases to run (also any one of the six alone, e.g. gzip_bomb)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # kind=port,...: hostile receivers
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        ports = dict(item.split("=") for item in arguments.serve.split(","))
        uvloop.run(serve({kind: int(port) for kind, port in ports.items()}))
    else:
        uvloop.run(main(arguments))
