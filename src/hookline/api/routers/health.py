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
    try:
        await runtime.db.ping()
    except Exception as error:  # any failure to reach the database means "not ready"
        return JSONResponse({"status": "unavailable", "detail": type(error).__name__},
                            status_code=503)
    return JSONResponse({"status": "ok", "database": runtime.db.dialect})
