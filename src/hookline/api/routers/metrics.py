"""``GET /metrics``: Prometheus text format (queue gauges are read from the database)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hookline.api.deps import RuntimeDep
from hookline.delivery import metrics

router = APIRouter(tags=["hookline"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    return Response(await metrics.render(runtime), media_type=CONTENT_TYPE_LATEST)
