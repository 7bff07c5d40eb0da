"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hookline.api.deps import RuntimeDep

router = APIRouter(tags=["hookline"])

# A database that does not answer within this is as good as away for a probe (a host that
# drops packets would otherwise hold the probe until the driver's own, much longer, timeout).
PROBE_TIMEOUT_SECONDS = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers, 503 while it is away."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            status, body = await runtime.db.readiness()
    except TimeoutError:
        status, body = 503, {"status": "unavailable", "detail": "TimeoutError"}
    return JSONResponse(body, status_code=status)
