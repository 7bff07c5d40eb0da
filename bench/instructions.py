"""Instructions per delivery under callgrind: the worker draining a backlog, or the bare client.

    .venv/bin/python -m bench.instructions [--n 3000] [--backend sqlite|postgresql]

Counts instructions, not seconds, so the numbers repeat whatever else the machine is doing
(callgrind makes the process about 50 times slower: keep N small). The child process runs
under ``valgrind --tool=callgrind --instr-atstart=no`` and switches counting on only around
the drain (``callgrind_control -i on|off``), so start-up, migrations and the backlog's
insertion are not counted. The receiver runs in its own process, outside valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import uvloop
from sqlalchemy import insert

from bench.delivery import (
    ROOT,
    ReceiverProcess,
    bare_drain,
    make_webhook,
    queue_backlog,
    target,
)
from hookline.bootstrap import prepare_database
from hookline.delivery.worker import DeliveryWorker
from hookline.ids import new_id
from hookline.runtime import Runtime, freeze_startup_objects
from hookline.store.tables import accounts

CONCURRENCY = 10  # the bare client's lanes (the worker uses its settings)


async def _count(on: bool) -> None:
    """Switch callgrind's counting for this process, and give it a moment to take effect."""
    subprocess.Popen(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        stdout=subprocess.DEVNULL,
    )
    await asyncio.sleep(2)


async def child(mode: str, backend: str, n: int) -> None:
    receiver = await ReceiverProcess().ready()
    freeze_startup_objects()
    try:
        async with target(backend) as tgt, aiohttp.ClientSession() as http:
            rt = Runtime.create(tgt.settings(delivery_poll_seconds=1.0))
            await prepare_database(rt)
            await rt.db.connect_ahead()
            account = new_id()
            async with rt.db.transaction() as conn:
                await conn.execute(
                    insert(accounts).values(id=account, name="bench", created_at=rt.clock.now())
                )
            hook = await make_webhook(rt, account, receiver.url + "/drain")
            if mode == "bare":
                await bare_drain(receiver.url + "/bare", 500, CONCURRENCY)  # warm
                await _count(True)
                await bare_drain(receiver.url + "/bare", n, CONCURRENCY)
                await _count(False)
            else:
                await queue_backlog(rt, account, hook, n)
                worker = DeliveryWorker(rt)
                stop = asyncio.Event()
                await _count(True)
                task = asyncio.create_task(worker.run(stop))
                await worker.wait_recorded(n, timeout=3600)
                await _count(False)
                stop.set()
                await task
                if (got := await receiver.count(http)) != n:
                    raise SystemExit(f"the receiver got {got} of {n}")
            await rt.db.dispose()
    finally:
        receiver.stop()


def callgrind(out: Path) -> list[str]:
    """The command prefix that runs a Python process under callgrind with counting off until
    ``callgrind_control -i on`` (start-up is never counted), writing to ``out``."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
    ]


def measure(mode: str, backend: str, n: int) -> int:
    """Run the child under callgrind; instructions counted per delivery (or request)."""
    with tempfile.TemporaryDirectory(prefix="hookline-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                *callgrind(out),
                "-m",
                "bench.instructions",
                "--child",
                mode,
                "--backend",
                backend,
                "--n",
                str(n),
            ],
            cwd=ROOT,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.MULTILINE)
        if totals is None:
            raise SystemExit("callgrind wrote no totals")
        return int(totals.group(1)) // n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="deliveries (and bare requests)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--child", choices=["worker", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        uvloop.run(child(args.child, args.backend, args.n))
        return
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    worker = measure("worker", args.backend, args.n)
    bare = measure("bare", args.backend, args.n)
    print(
        f"[{args.backend}] instructions per delivery: hookline worker {worker:,}, "
        f"bare aiohttp client {bare:,} per request ({bare / worker:.0%} of the worker's "
        f"cost: the instruction-count analogue of the drain ratio)"
    )


if __name__ == "__main__":
    main()
