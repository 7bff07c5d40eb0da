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

WHSEC_PREFIX = "whsec_"


class SigningKey:
    """A webhook's signing secret, prepared for both signature schemes.

    Holds HMAC states with the key already absorbed: each signature then costs a ``copy()``
    and the hashing of the body, not a fresh key setup (a worker signs thousands of requests
    with the same few secrets).
    """

    __slots__ = ("_chift", "_standard", "chift", "standard")

    def __init__(self, chift: bytes, standard: bytes) -> None:
        self.chift = chift  # the secret as UTF-8 (X-Chift-Signature)
        self.standard = standard  # Standard Webhooks key: base64 after ``whsec_``, else UTF-8
        self._chift = hmac.new(chift, digestmod=hashlib.sha256)
        self._standard = hmac.new(standard, digestmod=hashlib.sha256)

    @classmethod
    def from_secret(cls, secret: str) -> SigningKey:
        return cls(chift=secret.encode("utf-8"), standard=standard_key(secret))

    def chift_signature(self, body: bytes) -> str:
        mac = self._chift.copy()
        mac.update(body)
        return mac.hexdigest()

    def standard_signature(self, message_id: str, timestamp: int, body: bytes) -> str:
        mac = self._standard.copy()
        mac.update(b"%s.%d." % (message_id.encode(), timestamp))
        mac.update(body)  # no concatenated copy of the body
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def standard_key(secret: str) -> bytes:
    if secret.startswith(WHSEC_PREFIX):
        try:
            encoded = secret[len(WHSEC_PREFIX) :]
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass  # not valid base64: fall back to the raw text, like any other secret
    return secret.encode("utf-8")


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
        headers["X-Chift-Signature"] = key.chift_signature(body)
        headers["webhook-signature"] = key.standard_signature(message_id, timestamp, body)
    return headers
