"""POST /agent/heartbeat: local agents report that they are alive (hookline extension).

Authenticated by the connection's agent token (``Authorization: Bearer <agent token>`` or
``X-Agent-Token``), never by an account JWT: an agent on a consumer's premises must not hold
credentials that open the whole account.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel

from hookline.api.deps import RuntimeDep
from hookline.error_codes import ErrorCode
from hookline.errors import Unauthorized
from hookline.platform.agents import agent_heartbeat
from hookline.platform.statuses import AgentStatus

router = APIRouter(tags=["hookline"])


class HeartbeatResponse(BaseModel):
    connectionid: uuid.UUID
    consumerid: uuid.UUID
    status: Literal["up"]
    came_up: bool  # this ping ended an outage (or was the first): account.connection.up fired
    last_seen: datetime


def _agent_token(authorization: str | None, x_agent_token: str | None) -> str:
    if x_agent_token:
        return x_agent_token.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    raise Unauthorized("Missing agent token", error_code=ErrorCode.MISSING_AGENT_TOKEN)


@router.post("/agent/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
    x_agent_token: Annotated[str | None, Header()] = None,
) -> HeartbeatResponse:
    token = _agent_token(authorization, x_agent_token)
    async with runtime.db.transaction() as conn:
        beat = await agent_heartbeat(conn, token, now=runtime.clock.now())
    return HeartbeatResponse(
        connectionid=beat.connection_id,
        consumerid=beat.consumer_id,
        status=AgentStatus.UP,
        came_up=beat.came_up,
        last_seen=beat.last_seen,
    )
