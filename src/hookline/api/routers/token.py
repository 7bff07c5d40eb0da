"""POST /token: exchange an API key for a 30-minute access token."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from hookline.api.deps import RuntimeDep
from hookline.api.tokens import issue_token
from hookline.error_codes import ErrorCode
from hookline.errors import Unauthorized
from hookline.platform.accounts import check_api_key

router = APIRouter(tags=["General"])


class AuthItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    clientId: str
    clientSecret: str
    accountId: uuid.UUID
    marketplaceId: uuid.UUID | None = None


class Token(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    expires_on: int


@router.post("/token", response_model=Token, operation_id="generate_access_token_token_post")
async def generate_access_token(item: AuthItem, runtime: RuntimeDep) -> Token:
    async with runtime.db.read() as conn:
        valid = await check_api_key(
            conn,
            account_id=item.accountId,
            client_id=item.clientId,
            client_secret=item.clientSecret,
        )
    if not valid:
        raise Unauthorized("Invalid credentials", error_code=ErrorCode.INVALID_CREDENTIALS)
    token = issue_token(
        runtime.settings.jwt_key(),
        account_id=item.accountId,
        client_id=item.clientId,
        now=runtime.clock.now(),
        ttl_seconds=runtime.settings.token_ttl_seconds,
    )
    return Token(
        access_token=token.access_token,
        token_type="bearer",
        expires_in=token.expires_in,
        expires_on=token.expires_on,
    )
