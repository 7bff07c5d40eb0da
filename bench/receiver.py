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

_received: list[tuple[float, bytes]] = []


async def hook(request: web.Request) -> web.Response:
    body = await request.read()
    _received.append((time.time(), body))
    return web.Response(text="ok")


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(len(_received)))


async def dump(request: web.Request) -> web.Response:
    rows = []
    for at, body in _received:
        try:
            rows.append([at, json.loads(body).get("connectionid")])
        except ValueError:
            rows.append([at, None])
    return web.json_response(rows)


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
    app.router.add_post("/{tail:.*}", hook)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
