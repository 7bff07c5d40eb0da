"""The app as ``hookline serve`` runs it: built in-process for one process, or by each child
of ``hookline serve --processes N`` from the environment (uvicorn's supervisor starts the
children and imports :func:`app_from_environment` in each).

Every served app reports its process in ``/metrics`` (``hookline_process_info{pid=...}``):
with several processes behind one port, that tells which one answered. With
``HOOKLINE_BENCH_ROUTES=1`` (the benchmark sets it) it also serves ``POST /_bench/noop``, a
do-nothing route on the same app and server stack, matched first: the ceiling ``POST /events``
is compared with.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Info

from hookline.api.app import create_app
from hookline.config import Settings
from hookline.logconfig import configure_logging
from hookline.runtime import Runtime

BENCH_ROUTES_ENV = "HOOKLINE_BENCH_ROUTES"
PROCESS = Info("hookline_process", "The server process that answered this scrape.")


def build_app(runtime: Runtime, *, run_background: bool) -> FastAPI:
    app = create_app(runtime, run_background=run_background)
    PROCESS.info({"pid": str(os.getpid())})
    if os.environ.get(BENCH_ROUTES_ENV) == "1":
        app.add_api_route(
            "/_bench/noop", _noop, methods=["POST"], status_code=202, include_in_schema=False
        )
        # First, like POST /events (whose router comes first): at the end, every request for
        # it would first walk the whole route table, which is no part of a ceiling.
        app.router.routes.insert(0, app.router.routes.pop())
    return app


async def _noop(request: Request) -> Response:
    """Reads the body and answers 202 with a small JSON object: nothing else."""
    await request.body()
    return Response(b'{"ok":true}', status_code=202, media_type="application/json")


def app_from_environment() -> FastAPI:
    """Each child of ``--processes N``: settings from the environment the parent prepared
    (the parent already migrated the database)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return build_app(Runtime.create(settings), run_background=settings.run_worker)
