"""Backlog benchmark: does the worker drain a huge backlog as fast as a small one?

    .venv/bin/python -m bench.backlog [--sizes 20000,1000000] [--backend postgresql]

For each size N: N events with one delivery each are queued as ``emit`` writes them (the
backlog a receiver that was down leaves behind: no worker ran meanwhile), the planner's
statistics are refreshed as autovacuum would have while such a backlog built up (PostgreSQL
``ANALYZE``), then the receiver (its own process) is up and the real ``DeliveryWorker``
starts; the rate counts from its start until every result is recorded. The worker's claim
and record-delivered calls are timed in this process around the real calls (the worker's
queue links are wrapped, their SQL untouched): wall time per call as the worker sees it,
round trip included. Goal: the largest size drains within 20 % of the smallest's rate.
Results go to ``bench/results/backlog.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import uvloop
from sqlalchemy import insert

import hookline.delivery.worker as worker_module
from bench.delivery import (
    POSTGRES_URL,
    ROOT,
    ReceiverProcess,
    make_webhook,
    pinned,
    queue_backlog,
    target,
)
from hookline.bootstrap import prepare_database
from hookline.delivery.worker import DeliveryWorker
from hookline.ids import new_id
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.store.tables import accounts

Timings = dict[str, list[tuple[float, int]]]  # call -> (seconds, rows) per call


class TimedLink:
    """A worker's queue link, each claim and record-delivered call timed."""

    def __init__(self, link: Any, timings: Timings) -> None:
        self._link = link
        self._timings = timings

    async def claim(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        items = await self._link.claim(**kwargs)
        self._timings["claim"].append((time.perf_counter() - started, len(items)))
        return items

    async def record_delivered(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await self._link.record_delivered(**kwargs)
        rows = len(kwargs.get("records", ()))
        self._timings["record"].append((time.perf_counter() - started, rows))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)


@contextlib.contextmanager
def timed_links(timings: Timings) -> Iterator[None]:
    original = worker_module.open_queue_link
    worker_module.open_queue_link = lambda db: TimedLink(original(db), timings)  # type: ignore[assignment]
    try:
        yield
    finally:
        worker_module.open_queue_link = original


def summary(calls: list[tuple[float, int]]) -> dict[str, float]:
    if not calls:
        return {"calls": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "rows": 0.0}
    ms = sorted(seconds * 1000 for seconds, _ in calls)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return {
        "calls": len(ms),
        "mean_ms": statistics.fmean(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": p99,
        "rows": statistics.fmean(rows for _, rows in calls),
    }


async def analyze(schema: str | None) -> None:
    raw = await asyncpg.connect(POSTGRES_URL)
    try:
        for table in ("events", "deliveries", "delivery_queue"):
            await raw.execute(f'ANALYZE "{schema}".{table}')
    finally:
        await raw.close()


async def backlog_drain(
    backend: str, n: int, receiver: ReceiverProcess, pin: bool
) -> dict[str, Any]:
    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        rt = Runtime.create(tgt.settings(delivery_poll_seconds=1.0))
        await prepare_database(rt)
        account = new_id()
        async with rt.db.transaction() as conn:
            await conn.execute(
                insert(accounts).values(id=account, name="backlog", created_at=rt.clock.now())
            )
        hook = await make_webhook(rt, account, receiver.url + "/backlog")
        loading = time.perf_counter()
        await queue_backlog(rt, account, hook, n)
        load_s = time.perf_counter() - loading
        if backend == "postgresql":
            await analyze(tgt.schema)
        await receiver.reset(http)
        timings: Timings = {"claim": [], "record": []}
        with timed_links(timings), pinned(receiver, pin):
            worker, stop = DeliveryWorker(rt), asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(worker.run(stop))
            await worker.wait_recorded(n, timeout=3600)
            elapsed = time.perf_counter() - started
            stop.set()
            await task
        received = await receiver.count(http)
        await receiver.reset(http)
        await rt.db.dispose()
    result = {
        "n": n,
        "rate": n / elapsed,
        "seconds": elapsed,
        "load_s": load_s,
        "received": received,
        "claim": summary(timings["claim"]),
        "record": summary(timings["record"]),
    }
    claim, record = result["claim"], result["record"]
    print(
        f"[{backend}] backlog {n:,}: drained at {result['rate']:,.0f}/s in {elapsed:.1f} s "
        f"(queued in {load_s:.1f} s); received {received}; claim p50 {claim['p50_ms']:.2f} "
        f"p99 {claim['p99_ms']:.2f} ms ({claim['rows']:.0f} rows/call); record p50 "
        f"{record['p50_ms']:.2f} p99 {record['p99_ms']:.2f} ms ({record['rows']:.0f} rows/call)",
        flush=True,
    )
    return result


def write_report(backend: str, results: list[dict[str, Any]], command: str) -> str:
    base = results[0]["rate"]
    lines = [
        "# Backlog benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {backend}; "
        f"command: `{command}`.",
        "",
        "| backlog | drain rate | vs smallest | claim p50 / p99 | record p50 / p99 | "
        "rows per claim / record |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        claim, record = res["claim"], res["record"]
        lines.append(
            f"| {res['n']:,} | {res['rate']:,.0f}/s | {res['rate'] / base:.0%} | "
            f"{claim['p50_ms']:.2f} / {claim['p99_ms']:.2f} ms | "
            f"{record['p50_ms']:.2f} / {record['p99_ms']:.2f} ms | "
            f"{claim['rows']:.0f} / {record['rows']:.0f} |"
        )
    report = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "backlog.md").write_text(report)
    return report


async def main(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    receiver = await ReceiverProcess().ready()
    freeze_startup_objects()  # as `hookline worker` does
    try:
        results = [
            await backlog_drain(args.backend, n, receiver, pin=not args.no_pin) for n in sizes
        ]
    finally:
        receiver.stop()
    command = f".venv/bin/python -m bench.backlog --backend {args.backend} --sizes {args.sizes}"
    print(write_report(args.backend, results, command))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument(
        "--sizes", default="20000,1000000", help="backlog sizes, smallest first (comma-separated)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin worker and receiver")
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
