"""Rate limit benchmark: does ``rate_limit_per_second`` hold across worker processes?

    .venv/bin/python -m bench.rate_limit [--backend postgresql|sqlite] [--rate 50]
                                         [--seconds 8] [--processes 2] [--free 5000]

A backlog of ``rate * seconds`` deliveries to a limited webhook and ``--free`` deliveries to
an unlimited one (same receiver host) is queued, then ``--processes`` real ``hookline worker``
processes (one on SQLite) drain it into a loopback receiver in its own process. Reported:
the limited webhook's rate from its first to its last receipt and after its first second
(the saved burst spent), the most receipts in any one-second window, and when the unlimited
backlog was done (it must not wait for the limited one). Target: the rate within 10 % of the
limit, never above it by more than the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from typing import Any

import aiohttp
from sqlalchemy import update

from bench.delivery import ROOT, ReceiverProcess, make_webhook, queue_backlog, target
from hookline.bootstrap import prepare_database
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.rate_windows import burst
from hookline.store.tables import accounts, webhooks


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hookline.cli.main", "worker"], env=env, cwd=ROOT
    )


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is None:
            process.terminate()
    for process in workers:
        process.wait(timeout=20)


def most_in_window(times: list[float], window: float) -> int:
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limited_total = int(args.rate * args.seconds)
    receiver = await ReceiverProcess().ready()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with target(args.backend) as tgt, aiohttp.ClientSession() as http:
            rt = Runtime.create(tgt.settings())
            await prepare_database(rt)
            account = new_id()
            async with rt.db.transaction() as conn:
                await conn.execute(
                    accounts.insert().values(id=account, name="bench", created_at=rt.clock.now())
                )
            limited = await make_webhook(rt, account, receiver.url + "/limited")
            free = await make_webhook(rt, account, receiver.url + "/free")
            async with rt.db.transaction() as conn:
                await conn.execute(
                    update(webhooks)
                    .where(webhooks.c.id == limited)
                    .values(rate_limit_per_second=args.rate)
                )
            await queue_backlog(rt, account, limited, limited_total)
            if args.free:
                await queue_backlog(rt, account, free, args.free)
            await rt.db.dispose()
            await receiver.reset(http)
            processes = args.processes if args.backend == "postgresql" else 1
            workers = [start_worker(tgt.env()) for _ in range(processes)]
            try:
                await receiver.wait_count(http, limited_total + args.free, timeout=600)
                async with http.post(receiver.url + "/_take") as response:
                    rows = await response.json()
            finally:
                stop(workers)
    finally:
        stop(workers)
        receiver.stop()
    times = sorted(at for at, _, path in rows if path == "/limited")
    free_times = sorted(at for at, _, path in rows if path == "/free")
    started = min(times[0], *free_times[:1])  # the workers' first request
    span = times[-1] - times[0]
    steady = [at for at in times if at >= times[0] + 1.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    overall = (len(times) - 1) / span if span > 0 else float("inf")
    result = {
        "backend": args.backend,
        "processes": processes,
        "rate": args.rate,
        "limited": len(times),
        "overall": overall,
        "steady": steady_rate,
        "max_1s": most_in_window(times, 1.0),
        "max_1s_steady": most_in_window(steady, 1.0),
        "burst": burst(args.rate),
        "limited_done": times[-1] - started,
        "free": len(free_times),
        "free_done": (free_times[-1] - started) if free_times else 0.0,
    }
    within = abs(steady_rate - args.rate) <= 0.1 * args.rate
    print(
        f"[{args.backend} x{processes}] limit {args.rate:g}/s: {len(times)} deliveries over "
        f"{span:.2f} s = {overall:.1f}/s overall, {steady_rate:.1f}/s after the first second "
        f"({steady_rate / args.rate - 1:+.1%}, {'within' if within else 'OUTSIDE'} 10 %); "
        f"most in any 1 s window {result['max_1s']}, after the first second "
        f"{result['max_1s_steady']} (claims: at most limit + burst = "
        f"{args.rate + burst(args.rate):g}); unlimited webhook: {len(free_times)} done "
        f"{result['free_done']:.2f} s after the first request, limited after "
        f"{result['limited_done']:.2f} s",
        flush=True,
    )
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rate", type=float, default=50.0, help="the webhook's limit, per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="backlog, in seconds of rate")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (PostgreSQL)")
    parser.add_argument(
        "--free", type=int, default=5000, help="deliveries to an unlimited webhook beside it"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(run(parse_args()))
