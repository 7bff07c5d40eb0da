"""Request signatures: ``X-Chift-Signature`` and the Standard Webhooks headers.

Both sign the exact body bytes that are sent, so a receiver must verify the raw body before
parsing it. Keys are derived once per webhook secret (:class:`SigningKey`) because a worker
signs thousands of requests with the same few secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

WHSEC_PREFIX = "whsec_"


@dataclass(frozen=True)
class SigningKey:
    """A webhook's signing secret, prepared for both signature schemes."""

    chift: bytes  # the secret as UTF-8 (X-Chift-Signature)
    standard: bytes  # the Standard Webhooks key: base64-decoded after ``whsec_``, else UTF-8

    @classmethod
    def from_secret(cls, secret: str) -> SigningKey:
        return cls(chift=secret.encode("utf-8"), standard=standard_key(secret))


def standard_key(secret: str) -> bytes:
    if secret.startswith(WHSEC_PREFIX):
        try:
            encoded = secret[len(WHSEC_PREFIX):]
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass  # not valid base64: fall back to the raw text, like any other secret
    return secret.encode("utf-8")


def chift_signature(key: bytes, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of the body."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(
    *, message_id: str, timestamp: int, body: bytes, key: SigningKey | None
) -> dict[str, str]:
    """Every header of one delivery request (signatures only when the webhook has a secret)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "hookline",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        headers["X-Chift-Signature"] = chift_signature(key.chift, body)
        headers["webhook-signature"] = standard_signature(key.standard, message_id, timestamp,
                                                          body)
    return headers
