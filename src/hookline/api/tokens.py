"""Access tokens: short-lived JWTs naming the account they are scoped to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jwt

from hookline.error_codes import ErrorCode
from hookline.errors import Unauthorized

_ALGORITHM = "HS256"
_AUDIENCE = "hookline-api"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    expires_on: int


def issue_token(
    key: str, *, account_id: uuid.UUID, client_id: str, now: datetime, ttl_seconds: int
) -> IssuedToken:
    issued_at = int(now.timestamp())
    expires_on = issued_at + ttl_seconds
    claims = {
        "sub": str(account_id),
        "cid": client_id,
        "iat": issued_at,
        "exp": expires_on,
        "aud": _AUDIENCE,
    }
    return IssuedToken(jwt.encode(claims, key, algorithm=_ALGORITHM), ttl_seconds, expires_on)


#: Tokens already verified: (key, token) -> (account id, exp). A client sends the same token
#: with every request for its lifetime, and verifying it (PyJWT) costs more CPU than a whole
#: emitting transaction; the expiry is still checked against ``now`` on every request.
_verified: dict[tuple[str, str], tuple[uuid.UUID, float]] = {}
_VERIFIED_MAX = 10_000


def read_token(key: str, token: str, *, now: datetime) -> uuid.UUID:
    """The token's account id; :class:`Unauthorized` when invalid or expired at ``now``."""
    known = _verified.get((key, token))
    if known is not None:
        if known[1] <= now.timestamp():
            raise Unauthorized("The access token has expired", error_code=ErrorCode.TOKEN_EXPIRED)
        return known[0]
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    return _verify(key, token, now=now)


def _verify(key: str, token: str, *, now: datetime) -> uuid.UUID:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            # Times are checked against runtime.clock below, never against this host's wall
            # clock, so hosts whose clocks differ slightly agree on a token's validity.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["exp", "sub"],
            },
        )
    except jwt.PyJWTError as error:
        raise Unauthorized("Invalid access token", detail=str(error)) from None
    if claims["exp"] <= now.timestamp():
        raise Unauthorized("The access token has expired", error_code=ErrorCode.TOKEN_EXPIRED)
    try:
        account_id = uuid.UUID(claims["sub"])
    except ValueError:
        raise Unauthorized("Invalid access token") from None
    _verified[(key, token)] = (account_id, claims["exp"])
    return account_id
