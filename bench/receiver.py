"""A fast loopback webhook receiver for benchmarks, run in its own process (its own core).

It only timestamps and keeps each request; parsing happens when the results are fetched
(``GET /_dump``), so the receiver itself stays out of the measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import uvloop
from aiohttp import web

_received: list[tuple[float, bytes, str]] = []
_flaky = 0
FLAKY_EVERY = 10  # paths under /flaky answer 500 to every 10th request (the soak's 10 %)


async def hook(request: web.Request) -> web.Response:
    global _flaky
    body = await request.read()
    if request.path.startswith("/flaky"):
        _flaky += 1
        if _flaky % FLAKY_EVERY == 0:
            return web.Response(status=500, text="flaky")
    _received.append((time.time(), body, request.path))
    return web.Response(text="ok")


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(len(_received)))


def _rows(received: list[tuple[float, bytes, str]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for at, body, path in received:
        try:
            rows.append([at, json.loads(body).get("connectionid"), path])
        except ValueError:
            rows.append([at, None, path])
    return rows


async def dump(request: web.Request) -> web.Response:
    return web.json_response([row[:2] for row in _rows(_received)])


async def take(request: web.Request) -> web.Response:
    """What arrived since the last take, then forget it (a long run keeps memory flat)."""
    taken = _received[:]
    _received.clear()
    return web.json_response(_rows(taken))


async def reset(request: web.Request) -> web.Response:
    _received.clear()
    return web.Response(text="0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/_count", count)
    app.router.add_get("/_dump", dump)
    app.router.add_post("/_reset", reset)
    app.router.add_post("/_take", take)
    app.router.add_post("/{tail:.*}", hook)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
