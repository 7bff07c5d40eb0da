"""``GET /metrics``, ``/healthz`` and ``/readyz`` of a ``hookline worker`` process.

The attempt counters and the latency histogram count what their own process sent, and a
worker process has no API to be scraped through: without its own endpoint, what the workers
deliver would show in no metric. A small aiohttp server on the worker's event loop serves
the same text as the API's ``/metrics`` (queue gauges read from the database at scrape
time), so Prometheus scrapes every process as it does any multi-instance service.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hookline.delivery import metrics
from hookline.runtime import Runtime

_RUNTIME = web.AppKey("runtime", Runtime)


async def _metrics(request: web.Request) -> web.Response:
    body = await metrics.render(request.app[_RUNTIME])
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    status, body = await request.app[_RUNTIME].db.readiness()
    return web.json_response(body, status=status)


async def start_metrics_server(runtime: Runtime, host: str, port: int) -> web.AppRunner:
    """Serve until the returned runner is cleaned up (``await runner.cleanup()``)."""
    app = web.Application()
    app[_RUNTIME] = runtime
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
