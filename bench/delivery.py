"""Delivery benchmark: drain throughput and emit→receive latency, beside a bare aiohttp client,
and ingest (``bench/ingest.py``: accept rates beside a do-nothing route, batches, end to end
through batches), in one run.

    .venv/bin/python -m bench.delivery --backend sqlite|postgresql|both [--drain 20000]

(a) drain: N deliveries are queued (bulk-inserted rows, exactly what ``emit`` writes), then
    the real ``DeliveryWorker`` sends them to a loopback receiver running in its own process;
    the rate counts until every result is recorded. A bare aiohttp client then POSTs the same
    number of requests to the same receiver with the same per-host concurrency.
(b) latency: a real ``hookline serve`` subprocess gets ``POST /events`` at a fixed rate; the
    receiver timestamps arrivals; latency = arrival - the moment the POST was started. The bare
    client POSTs to the receiver directly on the same schedule.

Results go to ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import uvloop
from sqlalchemy import insert

from hookline.bootstrap import prepare_database
from hookline.config import Settings
from hookline.delivery.emit import build_body, encode_body, rehearse_emit
from hookline.delivery.worker import DeliveryWorker
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.store.tables import accounts, deliveries, delivery_queue, events, webhooks

POSTGRES_URL = os.environ.get(
    "HOOKLINE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
EVENT = "account.connection.deleted"
ROOT = Path(__file__).resolve().parent.parent
ENCRYPTION_KEY = "22" * 32
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            await asyncio.sleep(0.05)


class ReceiverProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(self.port)], cwd=ROOT
        )

    async def ready(self) -> ReceiverProcess:
        await wait_http(self.url + "/_count")
        return self

    async def count(self, http: aiohttp.ClientSession) -> int:
        async with http.get(self.url + "/_count") as response:
            return int(await response.text())

    async def reset(self, http: aiohttp.ClientSession) -> None:
        async with http.post(self.url + "/_reset") as response:
            await response.read()

    async def dump(self, http: aiohttp.ClientSession) -> list[list[Any]]:
        async with http.get(self.url + "/_dump") as response:
            rows: list[list[Any]] = await response.json()
            return rows

    async def wait_count(self, http: aiohttp.ClientSession, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while await self.count(http) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver got {await self.count(http)} of {n}")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Target:
    """One database to benchmark on: a SQLite file or a PostgreSQL schema."""

    backend: str
    data_dir: Path
    schema: str | None

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "jwt_secret": JWT_SECRET,
            "encryption_key": ENCRYPTION_KEY,
            "outbound_allowlist": ["127.0.0.0/8"],
            "log_level": "warning",
        }
        if self.backend == "postgresql":
            values.update(database_url=POSTGRES_URL, database_schema=self.schema)
        values.update(overrides)
        return Settings(**values)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HOOKLINE_DATA_DIR": str(self.data_dir),
            "HOOKLINE_JWT_SECRET": JWT_SECRET,
            "HOOKLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "HOOKLINE_OUTBOUND_ALLOWLIST": "127.0.0.0/8",
            "HOOKLINE_LOG_LEVEL": "warning",
        }
        env.pop("HOOKLINE_DATABASE_URL", None)
        env.pop("HOOKLINE_DATABASE_SCHEMA", None)
        if self.backend == "postgresql":
            env.update(
                HOOKLINE_DATABASE_URL=POSTGRES_URL, HOOKLINE_DATABASE_SCHEMA=self.schema or ""
            )
        return env

    async def drop(self) -> None:
        if self.schema:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()


@contextlib.asynccontextmanager
async def target(backend: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        schema = f"bench_{uuid.uuid4().hex[:10]}" if backend == "postgresql" else None
        tgt = Target(backend, Path(tmp), schema)
        try:
            yield tgt
        finally:
            await tgt.drop()


async def make_webhook(rt: Runtime, account_id: uuid.UUID, url: str) -> uuid.UUID:
    hook = new_id()
    now = rt.clock.now()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(webhooks).values(
                id=hook,
                account_id=account_id,
                event=EVENT,
                url=url,
                secret_encrypted=rt.secret_box.encrypt("whsec_" + "QUJD" * 8),
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
    return hook


async def queue_backlog(rt: Runtime, account_id: uuid.UUID, hook: uuid.UUID, n: int) -> None:
    """Write n events + deliveries + queue rows, as ``emit`` would, in big batches."""
    now = rt.clock.now()
    for start in range(0, n, 2000):
        ev_rows, dl_rows, q_rows = [], [], []
        for _ in range(start, min(n, start + 2000)):
            event_id, delivery_id = new_id(), new_id()
            body = build_body(
                account_id=account_id,
                event=EVENT,
                consumer_id=new_id(),
                created=int(now.timestamp()),
                fields={"connectionid": str(new_id())},
            )
            ev_rows.append(
                {
                    "id": event_id,
                    "account_id": account_id,
                    "event_type": EVENT,
                    "consumer_id": None,
                    "integration_id": None,
                    "payload": encode_body(body),
                    "idempotency_key": None,
                    "created_at": now,
                }
            )
            dl_rows.append(
                {
                    "id": delivery_id,
                    "event_id": event_id,
                    "webhook_id": hook,
                    "account_id": account_id,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            q_rows.append(
                {
                    "delivery_id": delivery_id,
                    "webhook_id": hook,
                    "event_id": event_id,
                    "available_at": now,
                    "attempt": 0,
                }
            )
        async with rt.db.transaction() as conn:
            await conn.execute(insert(events), ev_rows)
            await conn.execute(insert(deliveries), dl_rows)
            await conn.execute(insert(delivery_queue), q_rows)


def sample_body() -> bytes:
    body = build_body(
        account_id=new_id(),
        event=EVENT,
        consumer_id=new_id(),
        created=int(time.time()),
        fields={"connectionid": str(new_id())},
    )
    return encode_body(body)


async def bare_drain(url: str, n: int, concurrency: int) -> float:
    """A bare aiohttp client sending n POSTs with ``concurrency`` in flight; returns req/s."""
    body = sample_body()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    remaining = iter(range(n))

    async def lane(http: aiohttp.ClientSession) -> None:
        for _ in remaining:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()

    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(lane(http) for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


@contextlib.contextmanager
def pinned(receiver: ReceiverProcess, enabled: bool) -> Any:
    """The client side (this process: the worker, or the bare client) on CPU 0 and the
    receiver on CPU 1, as "one core each" means; other processes (PostgreSQL) go where the
    kernel puts them. Both sides of a ratio run pinned alike."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        yield False
        return
    os.sched_setaffinity(0, {cpus[0]})
    os.sched_setaffinity(receiver.process.pid, {cpus[1]})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, set(cpus))
        os.sched_setaffinity(receiver.process.pid, set(cpus))


async def drain(
    backend: str, receiver: ReceiverProcess, n: int, pin: bool = True
) -> dict[str, float]:
    with pinned(receiver, pin) as is_pinned:
        result = await _drain(backend, receiver, n)
    result["pinned"] = is_pinned
    return result


async def _drain(backend: str, receiver: ReceiverProcess, n: int) -> dict[str, Any]:
    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        rt = Runtime.create(tgt.settings(delivery_poll_seconds=1.0))
        await prepare_database(rt)
        account = new_id()
        async with rt.db.transaction() as conn:
            await conn.execute(
                insert(accounts).values(id=account, name="bench", created_at=rt.clock.now())
            )
        hook = await make_webhook(rt, account, receiver.url + "/drain")
        await queue_backlog(rt, account, hook, n)
        await receiver.reset(http)
        per_host = rt.settings.delivery_per_host_concurrency
        # The bare client runs before and after the worker (the mean is the baseline), so a
        # load change on the machine during the run does not skew the ratio one way.
        bare_before = await bare_drain(receiver.url + "/bare", n, per_host)
        await receiver.reset(http)
        worker = DeliveryWorker(rt)
        stop = asyncio.Event()
        cpu_before = time.process_time()
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        await worker.wait_recorded(n, timeout=600)
        elapsed = time.perf_counter() - started
        cpu_us = (time.process_time() - cpu_before) / n * 1e6
        stop.set()
        await task
        received = await receiver.count(http)
        await rt.db.dispose()
        await receiver.reset(http)
        bare_after = await bare_drain(receiver.url + "/bare", n, per_host)
        await receiver.reset(http)
        bare = (bare_before + bare_after) / 2
        rate = n / elapsed
        print(
            f"[{backend}] drain: hookline {rate:,.0f}/s, bare {bare:,.0f}/s "
            f"({rate / bare:.0%}); received {received}; worker CPU {cpu_us:.0f} us/delivery",
            flush=True,
        )
        return {
            "hookline": rate,
            "bare": bare,
            "ratio": rate / bare,
            "received": received,
            "n": n,
            "per_host": per_host,
            "cpu_us": cpu_us,
        }


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return cut[49], cut[98], ordered[-1]


async def paced(rate: float, seconds: float, send: Any) -> list[asyncio.Task[Any]]:
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.2
    tasks = []
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)
    return tasks


async def latency(
    backend: str, receiver: ReceiverProcess, rate: float, seconds: float
) -> dict[str, Any]:
    async with (
        target(backend) as tgt,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http,
    ):
        rt = Runtime.create(tgt.settings())
        await prepare_database(rt)
        async with rt.db.transaction() as conn:
            key = await create_account(conn, "bench", now=rt.clock.now())
        await make_webhook(rt, key.account_id, receiver.url + "/latency")
        await rt.db.dispose()
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hookline.cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=tgt.env(),
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_http(base + "/healthz")
            async with http.post(
                base + "/token",
                json={
                    "accountId": str(key.account_id),
                    "clientId": key.client_id,
                    "clientSecret": key.client_secret,
                },
            ) as response:
                token = (await response.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            await receiver.reset(http)
            sent: dict[str, float] = {}
            api_ms: list[float] = []
            errors = 0

            async def emit_one(i: int) -> None:
                nonlocal errors
                connection = str(uuid.uuid4())
                payload = {
                    "event": EVENT,
                    "consumerid": str(uuid.uuid4()),
                    "connectionid": connection,
                }
                sent[connection] = time.time()
                t0 = time.perf_counter()
                async with http.post(base + "/events", json=payload, headers=auth) as resp:
                    await resp.read()
                    if resp.status != 202:
                        errors += 1
                api_ms.append((time.perf_counter() - t0) * 1000)

            cpu_before = process_cpu_seconds(server.pid)
            await paced(rate, seconds, emit_one)
            total = int(rate * seconds)
            await receiver.wait_count(http, total - errors, timeout=120)
            # The server's CPU per event: its API and its worker (PostgreSQL's is not counted).
            server_us = (process_cpu_seconds(server.pid) - cpu_before) / total * 1e6
            rows = await receiver.dump(http)
            lat = [(at - sent[conn]) * 1000 for at, conn in rows if conn in sent]
            p50, p99, worst = percentiles(lat)
            api50, api99, _ = percentiles(api_ms)
            await receiver.reset(http)

            bare_sent: dict[str, float] = {}

            async def bare_one(i: int) -> None:
                connection = str(uuid.uuid4())
                body = json.dumps({"event": EVENT, "connectionid": connection}).encode()
                bare_sent[connection] = time.time()
                async with http.post(
                    receiver.url + "/bare", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()

            await paced(rate, seconds, bare_one)
            rows = await receiver.dump(http)
            bare = [(at - bare_sent[conn]) * 1000 for at, conn in rows if conn in bare_sent]
            b50, b99, bworst = percentiles(bare)
            await receiver.reset(http)
        finally:
            server.terminate()
            server.wait(timeout=20)
        print(
            f"[{backend}] latency at {rate:g}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {worst:.1f} ms (bare p50 {b50:.1f}, p99 {b99:.1f}); POST /events p50 "
            f"{api50:.1f} p99 {api99:.1f} ms; errors {errors}; received {len(lat)}; server CPU "
            f"{server_us:.0f} us/event",
            flush=True,
        )
        return {
            "p50": p50,
            "p99": p99,
            "max": worst,
            "bare_p50": b50,
            "bare_p99": b99,
            "bare_max": bworst,
            "api_p50": api50,
            "api_p99": api99,
            "server_us": server_us,
            "errors": errors,
            "received": len(lat),
            "sent": total,
            "rate": rate,
            "seconds": seconds,
        }


async def latency_inprocess(
    backend: str, receiver: ReceiverProcess, rate: float, seconds: float
) -> dict[str, Any]:
    """The engine alone: ``emit()`` in a transaction + the worker, both in this process."""
    from hookline.delivery.emit import EventDraft, emit_draft

    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        rt = Runtime.create(tgt.settings())
        await prepare_database(rt)
        account = new_id()
        async with rt.db.transaction() as conn:
            await conn.execute(
                insert(accounts).values(id=account, name="bench", created_at=rt.clock.now())
            )
        await make_webhook(rt, account, receiver.url + "/inprocess")
        await receiver.reset(http)
        await rt.db.connect_ahead(warm=rehearse_emit)  # as a server does at start-up
        worker = DeliveryWorker(rt)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        sent: dict[str, float] = {}
        committed: list[float] = []

        async def emit_one(i: int) -> None:
            connection = str(uuid.uuid4())
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
            committed.append((time.time() - sent[connection]) * 1000)

        await paced(rate, seconds, emit_one)
        total = int(rate * seconds)
        await receiver.wait_count(http, total, timeout=120)
        stop.set()
        await task
        await rt.db.dispose()
        rows = await receiver.dump(http)
        await receiver.reset(http)
        lat = [(at - sent[conn]) * 1000 for at, conn in rows if conn in sent]
        p50, p99, worst = percentiles(lat)
        c50, c99, _ = percentiles(committed)
        print(
            f"[{backend}] in-process emit latency at {rate:g}/s: p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {worst:.1f} ms; received {len(lat)}; emit committed "
            f"p50 {c50:.1f} p99 {c99:.1f} ms",
            flush=True,
        )
        return {
            "p50": p50,
            "p99": p99,
            "max": worst,
            "received": len(lat),
            "sent": total,
            "rate": rate,
            "seconds": seconds,
            "commit_p50": c50,
            "commit_p99": c99,
        }


def write_report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    from bench.ingest import report_lines as ingest_report

    lines = [
        "# Delivery benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; receiver in its own "
        "process on loopback; command: "
        f"`.venv/bin/python -m bench.delivery --backend {args.backend} --drain {args.drain} "
        f"--rate {args.rate:g} --seconds {args.seconds:g} --ingest-seconds "
        f"{args.ingest_seconds:g} --e2e-events {args.e2e_events} --processes {args.processes}"
        f"{' --no-pin' if args.no_pin else ''}`.",
        "",
        "## Drain throughput (backlog through the real worker, until every result is recorded)",
        "",
        "| backend | deliveries | hookline worker | bare aiohttp client | ratio (target ≥ 60%) "
        "| worker CPU per delivery | pinned |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for backend, res in results.items():
        d = res.get("drain")
        if d:
            lines.append(
                f"| {backend} | {d['n']:,} | {d['hookline']:,.0f}/s | "
                f"{d['bare']:,.0f}/s | {d['ratio']:.0%} | {d['cpu_us']:.0f} µs | "
                f"{'yes' if d['pinned'] else 'no'} |"
            )
    lines += [
        "",
        "## Emit → receive latency (`POST /events` on a real `hookline serve`)",
        "",
        "| backend | rate x time | p50 (target ≤ 3 ms) | p99 (target ≤ 20 ms) | max "
        "| bare client p50 / p99 |"
        " POST /events p50 / p99 | server CPU per event |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, res in results.items():
        lat = res.get("latency")
        if lat:
            lines.append(
                f"| {backend} | {lat['rate']:g}/s x {lat['seconds']:g} s "
                f"({lat['received']}/{lat['sent']} received) | {lat['p50']:.1f} ms | "
                f"{lat['p99']:.1f} ms | {lat['max']:.1f} ms | {lat['bare_p50']:.1f} / "
                f"{lat['bare_p99']:.1f} ms | {lat['api_p50']:.1f} / {lat['api_p99']:.1f} ms | "
                f"{lat.get('server_us', 0):.0f} µs |"
            )
    lines += [
        "",
        "## Emit -> receive latency of the engine alone (`emit()` + worker in one process)",
        "",
        "| backend | rate x time | p50 | p99 | max |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, res in results.items():
        lat = res.get("inprocess")
        if lat:
            lines.append(
                f"| {backend} | {lat['rate']:g}/s x {lat['seconds']:g} s "
                f"({lat['received']}/{lat['sent']} received) | {lat['p50']:.1f} ms | "
                f"{lat['p99']:.1f} ms | {lat['max']:.1f} ms |"
            )
    lines += ingest_report(results, args.ingest_concurrency)
    lines += [
        "",
        "One run; the README (section Benchmarks) gives the ranges over several runs and "
        "what limits each number.",
    ]
    report = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / "latest.md"
    out.write_text(report)
    return report


async def main(args: argparse.Namespace) -> None:
    from bench.ingest import ingest

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    receiver = await ReceiverProcess().ready()
    results: dict[str, dict[str, Any]] = {}
    # The worker runs in this process: set it up as `hookline worker` sets up its own (the
    # bare client then runs under the same collector settings).
    freeze_startup_objects()
    try:
        for backend in backends:
            results[backend] = {}
            if args.drain:
                results[backend]["drain"] = await drain(
                    backend, receiver, args.drain, pin=not args.no_pin
                )
            if args.seconds:
                if not args.no_inprocess:
                    results[backend]["inprocess"] = await latency_inprocess(
                        backend, receiver, args.rate, args.seconds
                    )
                if not args.no_api:
                    results[backend]["latency"] = await latency(
                        backend, receiver, args.rate, args.seconds
                    )
            if args.ingest_seconds or args.e2e_events:
                results[backend]["ingest"] = await ingest(
                    backend,
                    receiver,
                    seconds=args.ingest_seconds,
                    concurrency=args.ingest_concurrency,
                    e2e_events=args.e2e_events,
                    processes=[int(n) for n in args.processes.split(",")],
                )
    finally:
        receiver.stop()
    print(write_report(results, args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--drain", type=int, default=20000, help="backlog size for the drain test (0 skips it)"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="events/s for the latency test")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of the latency test (0 skips it)"
    )
    parser.add_argument(
        "--ingest-seconds",
        type=float,
        default=5.0,
        help="seconds per route of the ingest accept test (0 skips it)",
    )
    parser.add_argument(
        "--ingest-concurrency", type=int, default=32, help="requests in flight (single events)"
    )
    parser.add_argument(
        "--e2e-events",
        type=int,
        default=50000,
        help="events sent in batches of 1000 for the end-to-end ingest test (0 skips it)",
    )
    parser.add_argument(
        "--processes",
        default="1,2",
        help="`hookline serve --processes` values for the PostgreSQL ingest tests",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the drain's client side and receiver to one CPU each",
    )
    parser.add_argument(
        "--no-api",
        action="store_true",
        help="skip the latency test through POST /events on hookline serve",
    )
    parser.add_argument(
        "--no-inprocess",
        action="store_true",
        help="skip the latency test of the engine alone (emit() + worker in this process)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
