"""Backlog benchmark: does the worker drain a huge backlog as fast as a small one?

    .venv/bin/python -m bench.backlog [--sizes 20000,1000000] [--backend postgresql]

For each size N: N events with one delivery each are queued as ``emit`` writes them (the
backlog a receiver that was down leaves behind: no worker ran meanwhile), the planner's
statistics are refreshed as autovacuum would have while such a backlog built up (PostgreSQL
``ANALYZE``), then the receiver (its own process) is up and the real ``DeliveryWorker``
starts; the rate counts from its start until every result is recorded. The worker's claim
and record-delivered calls are timed in this process around the real calls (the worker's
queue links are wrapped, their SQL untouched): wall time per call as the worker sees it,
round trip included; when the database has ``pg_stat_statements``, the server's own
execution time of the two statements is reported too. Goal: the largest size drains within
20 % of the smallest's rate. Results go to ``bench/results/backlog.md``.
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

import hookline.store.delivery_queue as queue_module
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
from hookline.store import queue_link
from hookline.store.db import Database
from hookline.store.queue_link import QueueLink
from hookline.store.tables import accounts

Timings = dict[str, list[tuple[float, int]]]  # call -> (seconds, rows) per call


class TimedLink:
    """A worker's queue link, each claim and record-delivered call timed."""

    last_claim: dict[str, Any] = {}  # the arguments of the latest claim (for --explain)

    def __init__(self, link: Any, timings: Timings) -> None:
        self._link = link
        self._timings = timings

    async def claim(self, **kwargs: Any) -> Any:
        TimedLink.last_claim = kwargs
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
    """Time the worker's claims and recordings: the delivery queue opens its links through
    ``open_queue_link`` in its own module."""
    original = queue_link.open_queue_link

    def timed(db: Database) -> QueueLink:
        return TimedLink(original(db), timings)

    namespace = vars(queue_module)
    namespace["open_queue_link"] = timed
    try:
        yield
    finally:
        namespace["open_queue_link"] = original


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


def phase_p50(calls: list[tuple[float, int]], first: bool) -> float:
    """Median wall time (ms) of the first or the last tenth of the calls: a statement that
    slows down as the backlog drains shows here, not in the whole-run median."""
    if not calls:
        return 0.0
    tenth = max(1, len(calls) // 10)
    part = calls[:tenth] if first else calls[-tenth:]
    return statistics.median(seconds * 1000 for seconds, _ in part)


def phase_rates(samples: list[tuple[float, int]], n: int) -> list[float]:
    """Deliveries/s over each tenth of the backlog, from (seconds, recorded) samples."""
    rates = []
    for k in range(10):
        lo, hi = n * k // 10, n * (k + 1) // 10
        start = next((t for t, done in samples if done >= lo), None)
        end = next((t for t, done in samples if done >= hi), None)
        if start is None or end is None or end <= start:
            rates.append(0.0)
        else:
            rates.append((hi - lo) / (end - start))
    return rates


async def explain_claim(schema: str | None, label: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the worker's claim statement with its latest arguments,
    in a transaction rolled back (the rows it leases stay the worker's to take), beside the
    queue table's row counts and sizes at that moment."""
    from hookline.store import queue_link

    claim_sql = getattr(queue_link, "_CLAIM_POSTGRESQL", None)
    args = TimedLink.last_claim
    if claim_sql is None or not args:
        return f"-- {label}: no claim statement or no claim yet\n"
    now = datetime.now(UTC)
    limit = args["limit"]
    per_webhook = args.get("per_webhook")
    shares = args.get("shares") or {}
    # The worker's link session settings (store/queue_link.py): without jit=off a 1M backlog
    # makes the planner's estimate cross the JIT thresholds and the plan shows ~0.8 s of
    # compiling that the worker never pays.
    settings = {"search_path": schema or "public", "jit": "off", "synchronous_commit": "off"}
    raw = await asyncpg.connect(POSTGRES_URL, server_settings=settings)
    try:
        stats = await raw.fetchrow(
            "SELECT n_live_tup, n_dead_tup, last_autovacuum, last_vacuum, autovacuum_count "
            "FROM pg_stat_user_tables WHERE relid = 'delivery_queue'::regclass"
        )
        sizes = await raw.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) AS bytes FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname LIKE '%delivery_queue%' ORDER BY 1",
            schema,
        )
        async with raw.transaction():
            plan = await raw.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + claim_sql,
                now,
                limit,
                now,
                "bench-explain",
                limit if per_webhook is None else per_webhook,
                list(shares),
                list(shares.values()),
            )
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await raw.close()
    lines = [f"-- {label} (limit {limit}, per_webhook {per_webhook}, {len(shares)} shares)"]
    lines.append(f"-- delivery_queue stats: {dict(stats) if stats else None}")
    lines.append(
        "-- sizes: " + ", ".join(f"{r['relname']} {r['bytes'] / 1e6:.1f} MB" for r in sizes)
    )
    lines.extend(row[0] for row in plan)
    return "\n".join(lines) + "\n\n"


class _Rollback(Exception):
    pass


# The worker's two statements, as pg_stat_statements normalises them (queue_link.py).
STATEMENTS = {
    "claim": "WITH RECURSIVE hooks%",
    "record": "WITH done AS (DELETE FROM delivery_queue%",
}


async def statement_stats(reset: bool) -> dict[str, dict[str, float]] | None:
    """Server-side execution time of the claim and record statements, from
    pg_stat_statements when the database has it (None otherwise); ``reset`` clears it."""
    raw = await asyncpg.connect(POSTGRES_URL)
    try:
        present = await raw.fetchval(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
        if not present:
            return None
        if reset:
            await raw.execute("SELECT pg_stat_statements_reset()")
            return None
        stats: dict[str, dict[str, float]] = {}
        for name, pattern in STATEMENTS.items():
            row = await raw.fetchrow(
                "SELECT sum(calls) AS calls, sum(total_exec_time) / nullif(sum(calls), 0) AS mean, "
                "max(max_exec_time) AS max, sum(rows) / nullif(sum(calls), 0) AS rows, "
                "sum(shared_blks_hit + shared_blks_read) / nullif(sum(calls), 0) AS blocks "
                "FROM pg_stat_statements WHERE query LIKE $1",
                pattern,
            )
            stats[name] = {
                key: float((row[key] if row is not None else 0) or 0)
                for key in ("calls", "mean", "max", "rows", "blocks")
            }
        return stats
    finally:
        await raw.close()


async def analyze(schema: str | None) -> None:
    raw = await asyncpg.connect(POSTGRES_URL)
    try:
        for table in ("events", "deliveries", "delivery_queue"):
            await raw.execute(f'ANALYZE "{schema}".{table}')
    finally:
        await raw.close()


async def backlog_drain(
    backend: str, n: int, receiver: ReceiverProcess, pin: bool, explain: bool = False
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
        if backend == "postgresql":
            await statement_stats(reset=True)
        timings: Timings = {"claim": [], "record": []}
        with timed_links(timings), pinned(receiver, pin):
            worker, stop = DeliveryWorker(rt), asyncio.Event()
            started, cpu_started = time.perf_counter(), time.process_time()
            task = asyncio.create_task(worker.run(stop))
            samples: list[tuple[float, int]] = [(0.0, 0)]
            plans: list[str] = []

            async def watch() -> None:
                explaining = explain and backend == "postgresql"
                marks = [n // 100, n // 2, n * 9 // 10] if explaining else []
                while worker.recorded_count < n:
                    await asyncio.sleep(0.5)
                    done = worker.recorded_count
                    samples.append((time.perf_counter() - started, done))
                    if marks and done >= marks[0]:
                        while marks and done >= marks[0]:
                            marks.pop(0)
                        label = f"{n:,} backlog, {done:,} drained"
                        plans.append(await explain_claim(tgt.schema, label))

            watcher = asyncio.create_task(watch())
            await worker.wait_recorded(n, timeout=3600)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            samples.append((elapsed, n))
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            stop.set()
            await task
        received = await receiver.count(http)
        server = await statement_stats(reset=False) if backend == "postgresql" else None
        await receiver.reset(http)
        await rt.db.dispose()
    if plans:
        (ROOT / "bench" / "results" / f"backlog-explain-{n}.txt").write_text("".join(plans))
    result: dict[str, Any] = {
        "n": n,
        "rate": n / elapsed,
        "tenths": phase_rates(samples, n),
        "cpu_us": cpu / n * 1e6,  # this process (the worker) per delivery: load-independent
        "load": os.getloadavg()[0],
        "server": server,
        "claim_first": phase_p50(timings["claim"], first=True),
        "claim_last": phase_p50(timings["claim"], first=False),
        "record_first": phase_p50(timings["record"], first=True),
        "record_last": phase_p50(timings["record"], first=False),
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
        f"{record['p50_ms']:.2f} p99 {record['p99_ms']:.2f} ms ({record['rows']:.0f} rows/call); "
        f"claim p50 first/last tenth {result['claim_first']:.2f}/{result['claim_last']:.2f} ms; "
        f"rate per tenth {', '.join(f'{r:,.0f}' for r in result['tenths'])}/s; worker CPU "
        f"{result['cpu_us']:.0f} µs/delivery; load average {result['load']:.1f}",
        flush=True,
    )
    if server:
        print(f"[{backend}] backlog {n:,}: pg_stat_statements {server}", flush=True)
    return result


def write_report(backend: str, results: list[dict[str, Any]], command: str) -> str:
    base = results[0]["rate"]
    lines = [
        "# Backlog benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {backend}; "
        f"command: `{command}`.",
        "",
        "| backlog | drain rate | vs smallest | first / last tenth | worker CPU per delivery | "
        "claim p50 / p99 | claim p50 first / last tenth | record p50 / p99 | "
        "rows per claim / record | load avg at end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        claim, record = res["claim"], res["record"]
        lines.append(
            f"| {res['n']:,} | {res['rate']:,.0f}/s | {res['rate'] / base:.0%} | "
            f"{res['tenths'][0]:,.0f} / {res['tenths'][-1]:,.0f}/s | {res['cpu_us']:.0f} µs | "
            f"{claim['p50_ms']:.2f} / {claim['p99_ms']:.2f} ms | "
            f"{res['claim_first']:.2f} / {res['claim_last']:.2f} ms | "
            f"{record['p50_ms']:.2f} / {record['p99_ms']:.2f} ms | "
            f"{claim['rows']:.0f} / {record['rows']:.0f} | {res['load']:.1f} |"
        )
    served = [res for res in results if res.get("server")]
    if served:
        lines += [
            "",
            "Server-side execution time (pg_stat_statements), mean / max per call:",
            "",
            "| backlog | claim | record | shared blocks per claim / record |",
            "|---:|---:|---:|---:|",
        ]
        for res in served:
            claim, record = res["server"]["claim"], res["server"]["record"]
            lines.append(
                f"| {res['n']:,} | {claim['mean']:.2f} / {claim['max']:.1f} ms | "
                f"{record['mean']:.2f} / {record['max']:.1f} ms | "
                f"{claim['blocks']:.0f} / {record['blocks']:.0f} |"
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
            await backlog_drain(
                args.backend, n, receiver, pin=not args.no_pin, explain=args.explain
            )
            for n in sizes
        ]
    finally:
        receiver.stop()
    command = f".venv/bin/python -m bench.backlog --backend {args.backend} --sizes {args.sizes}"
    if args.explain:
        command += " --explain"
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
    parser.add_argument(
        "--explain",
        action="store_true",
        help="PostgreSQL: EXPLAIN (ANALYZE, BUFFERS) the claim at 1 %%, 50 %% and 90 %% drained "
        "into bench/results/backlog-explain-<N>.txt",
    )
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
