"""Instructions per ``POST /events`` request under callgrind, beside a do-nothing route.

    .venv/bin/python -m bench.ingest_instructions [--n 2000] [--concurrency 1]
        [--backend sqlite|postgresql|both] [--keep DIR]

The server is ``hookline serve --no-worker`` (the same command, uvicorn settings and app as
the delivery benchmark's latency run, with ``HOOKLINE_BENCH_ROUTES=1`` for
``POST /_bench/noop``), run under ``valgrind --tool=callgrind --instr-atstart=no``. The
database is prepared first (an account, one active webhook for the event sent, so every
request also queues one delivery). The client (aiohttp, ``--concurrency`` requests in
flight, one body per request as the latency run sends it) runs outside valgrind. One in
flight by default: each request is then its own group commit, as at low rates; with more,
how many requests share a commit depends on timing, and so do the counts (a few percent). For each
route, after a warm-up, counting is switched on (``callgrind_control -z``, ``-i on``) only
around the N requests, then off and dumped (``-d``): start-up, migrations and warm-up are
not counted; the idle event loop between switching on and the first request costs next to
nothing. Instructions count the same whatever else the machine is doing (callgrind makes
the server about 50 times slower: keep N small).

Prints, per backend, instructions per request for ``POST /_bench/noop`` (reads the body,
answers 202: the framework's and server's own cost) and ``POST /events`` (202 after the
commit), and their difference (what hookline adds). ``--keep DIR`` keeps the dumps
(``callgrind_annotate --inclusive=yes DIR/<backend>.out.2``: POST /events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import aiohttp
import uvloop

from bench.delivery import EVENT, ROOT, free_port, make_webhook, target, wait_http
from bench.ingest import bearer
from bench.instructions import callgrind
from hookline.bootstrap import prepare_database
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime

WARMUP = 200
ROUTES = ("/_bench/noop", "/events")
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def _bodies(n: int) -> list[bytes]:
    """The latency run's body: a fresh consumer and connection per event."""
    return [
        json.dumps(
            {"event": EVENT, "consumerid": str(uuid.uuid4()), "connectionid": str(uuid.uuid4())}
        ).encode()
        for _ in range(n)
    ]


async def _send(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int, concurrency: int
) -> None:
    bodies = iter(_bodies(n))

    async def lane() -> None:
        for body in bodies:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 202:
                    raise SystemExit(f"{url} answered {response.status}: {await response.text()}")

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _dumped(path: Path) -> int:
    """The dump's total instructions, once callgrind has written it."""
    for _ in range(600):
        if path.exists() and (totals := _TOTALS.search(path.read_text())):
            return int(totals.group(1))
        await asyncio.sleep(0.1)
    raise SystemExit(f"callgrind wrote no {path}")


async def measure(backend: str, n: int, concurrency: int, out: Path) -> dict[str, int]:
    """Instructions per request for each route, from one server under callgrind."""
    async with target(backend) as tgt, aiohttp.ClientSession() as http:
        rt = Runtime.create(tgt.settings())
        await prepare_database(rt)
        async with rt.db.transaction() as conn:
            key = await create_account(conn, "bench", now=rt.clock.now())
        await make_webhook(rt, key.account_id, "http://127.0.0.1:9/unused")  # no worker
        await rt.db.dispose()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                *callgrind(out),
                "-m",
                "hookline.cli.main",
                "serve",
                "--no-worker",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={**tgt.env(), "HOOKLINE_BENCH_ROUTES": "1"},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_http(base + "/healthz", timeout=600)
            headers = await bearer(http, base, key)
            result: dict[str, int] = {}
            for dump, route in enumerate(ROUTES, start=1):
                await _send(http, base + route, headers, WARMUP, concurrency)
                _control(server.pid, "-z")
                _control(server.pid, "-i", "on")
                await _send(http, base + route, headers, n, concurrency)
                _control(server.pid, "-i", "off")
                _control(server.pid, "-d", route.strip("/").replace("/", "-"))
                result[route] = await _dumped(Path(f"{out}.{dump}")) // n
        finally:
            server.terminate()
            server.wait(timeout=120)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="requests counted per route")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--keep", type=Path, help="keep callgrind's dumps in this directory")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="hookline-callgrind-") as tmp:
            directory = args.keep or Path(tmp)
            directory.mkdir(parents=True, exist_ok=True)
            counts = uvloop.run(
                measure(backend, args.n, args.concurrency, directory / f"{backend}.out")
            )
        noop, events = counts["/_bench/noop"], counts["/events"]
        print(
            f"[{backend}] instructions per request ({args.n} requests, {args.concurrency} in "
            f"flight): POST /_bench/noop {noop:,}, POST /events {events:,} "
            f"(+{events - noop:,}, {events / noop:.1f}x the do-nothing route)",
            flush=True,
        )


if __name__ == "__main__":
    main()
