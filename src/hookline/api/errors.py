"""Maps every error to the contract's shapes: ChiftError, or HTTPValidationError for 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hookline.errors import HooklineError


def error_body(message: str, *, detail: Any = "", error_code: str | None = None) -> dict[str, Any]:
    return {"message": message, "status": "error", "detail": detail, "error_code": error_code}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HooklineError)
    async def _domain(request: Request, error: HooklineError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
        return JSONResponse(
            error_body(error.message, detail=error.detail, error_code=error.error_code),
            status_code=error.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        # ``input`` is left out on purpose: it would echo secrets (clientSecret,
        # signingsecret, credentials) back into responses and logs.
        detail = [
            {key: value for key, value in item.items() if key in {"loc", "msg", "type", "ctx"}}
            for item in error.errors()
        ]
        return JSONResponse(
            {
                "message": "Validation error",
                "status": "error",
                "detail": jsonable_encoder(detail, custom_encoder={Exception: str}),
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "ERROR_NOT_FOUND",
            405: "ERROR_METHOD_NOT_ALLOWED",
            401: "ERROR_UNAUTHORIZED",
            413: "ERROR_PAYLOAD_TOO_LARGE",
        }
        return JSONResponse(
            error_body(str(error.detail), error_code=codes.get(error.status_code)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )
