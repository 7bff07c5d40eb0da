"""Dashboard sessions: an HMAC-signed cookie, and the CSRF token derived from it.

The cookie carries the account id, the API client id, a random session id and an expiry,
signed with a key derived from the JWT secret (so hosts sharing that secret share sessions).
It is HttpOnly and SameSite=Lax. Each form carries a CSRF token: an HMAC of the session id
under a second derived key, checked in constant time on every POST — SameSite alone does not
cover older browsers or same-site subdomains.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

COOKIE_NAME = "hookline_session"
LOGIN_COOKIE_NAME = "hookline_login"  # double-submit token for the login form (no session yet)
SESSION_TTL_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    account_id: uuid.UUID
    client_id: str
    session_id: str
    expires: int


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"hookline-ui:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_session(
    account_id: uuid.UUID, client_id: str, *, now: datetime, ttl_seconds: int = SESSION_TTL_SECONDS
) -> Session:
    return Session(
        account_id, client_id, secrets.token_urlsafe(18), int(now.timestamp()) + ttl_seconds
    )


def encode_session(secret: str, session: Session) -> str:
    payload = _b64(
        json.dumps(
            {
                "a": str(session.account_id),
                "c": session.client_id,
                "s": session.session_id,
                "e": session.expires,
            },
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(_key(secret, "session"), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def decode_session(secret: str, cookie: str | None, *, now: datetime) -> Session | None:
    """The session in a cookie, or ``None`` when absent, tampered with, malformed or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    expected = _b64(hmac.new(_key(secret, "session"), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    try:
        data = json.loads(_unb64(payload))
        session = Session(uuid.UUID(data["a"]), str(data["c"]), str(data["s"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires <= now.timestamp():
        return None
    return session


def csrf_token(secret: str, session_id: str) -> str:
    return _b64(hmac.new(_key(secret, "csrf"), session_id.encode(), hashlib.sha256).digest())


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
