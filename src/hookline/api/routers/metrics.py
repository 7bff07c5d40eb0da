"""``GET /metrics``: Prometheus text format (queue gauges are read from the database).

While the database is away the queue gauges cannot be read: the answer is 503 (a scrape
failure Prometheus records as ``up == 0``), never a 500 or gauges silently left stale.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hookline.api.deps import RuntimeDep
from hookline.api.routers.health import PROBE_TIMEOUT_SECONDS
from hookline.delivery import metrics

router = APIRouter(tags=["hookline"])
log = logging.getLogger(__name__)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            body = await metrics.render(runtime)
    except Exception as error:  # whatever the driver raises, the database is not answering
        log.warning("GET /metrics: queue gauges unavailable: %r", error)
        return Response(
            f"# database unavailable: {type(error).__name__}\n",
            status_code=503,
            media_type="text/plain; charset=utf-8",
            headers={"Retry-After": "5"},
        )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
