"""Maps every error to the contract's shapes: ChiftError, or HTTPValidationError for 422.

A 422 follows the contract operation by operation: where the contract documents
``HTTPValidationError`` (``VALIDATION_LIST_OPERATIONS``) ``detail`` is the list of errors;
everywhere else (the contract's ChiftError 422s and hookline's own routes) ``detail`` is one
string and the list goes in ``errors``. A body whose only fault is unknown fields (a model
with ``extra="forbid"``) is a 400 ``ERROR_UNKNOWN_FIELD``. A database that cannot be reached
answers 503, never 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from hookline.error_codes import ErrorCode
from hookline.errors import HooklineError

log = logging.getLogger(__name__)

# (method, path) of the contract operations whose 422 is ``HTTPValidationError`` (a list in
# ``detail``); taken from the contract, checked against it by tests/api_edges.
VALIDATION_LIST_OPERATIONS = frozenset(
    {
        ("GET", "/consumers"),
        ("GET", "/consumers/{consumer_id}"),
        ("DELETE", "/consumers/{consumer_id}"),
        ("GET", "/consumers/{consumer_id}/connections"),
        ("DELETE", "/consumers/{consumer_id}/connections/{connectionid}"),
        ("GET", "/consumers/{consumer_id}/issues"),
        ("GET", "/consumers/{consumer_id}/pos/locations"),
        ("GET", "/consumers/{consumer_id}/pos/orders"),
        ("GET", "/consumers/{consumer_id}/pos/orders/{order_id}"),
        ("PATCH", "/consumers/{consumer_id}/pos/orders/{order_id}"),
        ("POST", "/consumers/{consumer_id}/syncs"),
        ("GET", "/consumers/{consumer_id}/syncs/{syncid}"),
        ("POST", "/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}/disable"),
        ("GET", "/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}/executions"),
        ("GET", "/integrations"),
        ("GET", "/issues"),
        ("GET", "/issues/{issue_id}"),
        ("POST", "/syncs"),
        ("GET", "/syncs/{syncid}"),
        ("GET", "/syncs/{syncid}/executions"),
        ("GET", "/syncs/{syncid}/flows/{flowid}/executions/{executionid}"),
        ("POST", "/token"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks"),
        ("DELETE", "/webhooks/{webhookid}"),
        ("GET", "/webhooks/{webhookid}"),
        ("PATCH", "/webhooks/{webhookid}"),
        ("GET", "/webhooks/{webhookid}/logs"),
    }
)

_HTTP_CODES = {
    400: ErrorCode.INVALID_BODY,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    401: ErrorCode.UNAUTHORIZED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


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
        items = validation_items(error)
        if items and all(item["type"] == "extra_forbidden" for item in items):
            names = ", ".join(str(item["loc"][-1]) for item in items)
            return JSONResponse(
                {
                    **error_body(
                        f"Unknown field(s): {names}",
                        detail=validation_summary(items),
                        error_code=ErrorCode.UNKNOWN_FIELD,
                    ),
                    "errors": items,
                },
                status_code=400,
            )
        if operation_key(request) in VALIDATION_LIST_OPERATIONS:
            body = {"message": "Validation error", "status": "error", "detail": items}
        else:
            body = {
                **error_body(
                    "Validation error",
                    detail=validation_summary(items),
                    error_code=ErrorCode.VALIDATION,
                ),
                "errors": items,
            }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = getattr(error, "error_code", None) or _HTTP_CODES.get(error.status_code)
        return JSONResponse(
            error_body(str(error.detail), error_code=code),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    async def _database_away(request: Request, error: Exception) -> JSONResponse:
        log.warning(
            "database unavailable during %s %s: %r", request.method, request.url.path, error
        )
        return JSONResponse(
            error_body(
                "The database is unavailable, retry shortly",
                error_code=ErrorCode.DATABASE_UNAVAILABLE,
            ),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def _driver_error(request: Request, error: Exception) -> JSONResponse:
        # A lost connection (PostgreSQL restarting, shutting down) is the database being
        # away; any other driver error is a bug and stays a 500.
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return await _database_away(request, error)
        raise error

    for failure in (OperationalError, InterfaceError, PoolTimeout, ConnectionError):
        app.add_exception_handler(failure, _database_away)
    app.add_exception_handler(DBAPIError, _driver_error)


def operation_key(request: Request) -> tuple[str, str]:
    """(method, path template) of the route that answered."""
    route = request.scope.get("route")
    return request.method, getattr(route, "path", request.url.path)


def validation_items(error: RequestValidationError) -> list[dict[str, Any]]:
    # ``input`` is left out on purpose: it would echo secrets (clientSecret,
    # signingsecret, credentials) back into responses and logs.
    items = [
        {key: value for key, value in item.items() if key in {"loc", "msg", "type", "ctx"}}
        for item in error.errors()
    ]
    encoded: list[dict[str, Any]] = jsonable_encoder(items, custom_encoder={Exception: str})
    return encoded


def validation_summary(items: list[dict[str, Any]]) -> str:
    """One line per error, ``location: message``, for the string ``detail``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in items
    )


VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ValidationChiftError",
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "status": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "error"},
        "detail": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": ""},
        "error_code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
    },
}


def document_validation_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the 422 handler does, operation by operation."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["ValidationChiftError"] = VALIDATION_ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ValidationChiftError"}
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            response = operation.get("responses", {}).get("422")
            if response is not None and (method.upper(), path) not in VALIDATION_LIST_OPERATIONS:
                response["content"] = {"application/json": {"schema": ref}}
    return openapi
