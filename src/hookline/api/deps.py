"""Request dependencies: the runtime, the caller's account, and units of work."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.api.tokens import read_token
from hookline.error_codes import ErrorCode
from hookline.errors import Unauthorized
from hookline.runtime import Runtime

_bearer = HTTPBearer(auto_error=False)


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# thread pool, and that hop per request costs more than the work they do.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime  # set by create_app; Starlette's state is Any
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def current_account(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    """The account the bearer token was issued to; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Missing bearer token", error_code=ErrorCode.MISSING_TOKEN)
    return read_token(runtime.settings.jwt_key(), credentials.credentials, now=runtime.clock.now())


AccountId = Annotated[uuid.UUID, Depends(current_account)]


def bearer_account(runtime: Runtime, authorization: str | None) -> uuid.UUID:
    """:func:`current_account` from the ``Authorization`` header's value, with the same
    answers (what ``HTTPBearer(auto_error=False)`` would give it, without a request)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if not (scheme and token) or scheme.lower() != "bearer":
        raise Unauthorized("Missing bearer token", error_code=ErrorCode.MISSING_TOKEN)
    return read_token(runtime.settings.jwt_key(), token, now=runtime.clock.now())


async def read_conn(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    async with runtime.db.read() as conn:
        yield conn


ReadConn = Annotated[AsyncConnection, Depends(read_conn)]
