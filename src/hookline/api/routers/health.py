"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hookline.api.deps import RuntimeDep

router = APIRouter(tags=["hookline"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    status, body = await runtime.db.readiness()
    return JSONResponse(body, status_code=status)
