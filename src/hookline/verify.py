"""Verify hookline webhook signatures in a receiver — standard library only, copy it freely.

hookline signs every delivery twice when the webhook has a signing secret:

* ``X-Chift-Signature``: lowercase hex HMAC-SHA256 of the raw body, keyed by the secret
  (UTF-8). Compatible with receivers written for the hub.
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``
  and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (possibly several
  space-separated signatures, e.g. during a secret rotation). ``whsec_`` secrets are
  base64-decoded after the prefix; other secrets (and a ``whsec_`` secret that is not valid
  base64) are used as UTF-8. The timestamp lets a
  receiver reject replays of old requests.

Always verify the **raw** request body, before parsing it: re-serialised JSON differs.

Example::

    from hookline.verify import InvalidSignature, verify

    try:
        verify(raw_body, request_headers, secret="my-signing-secret")
    except InvalidSignature as error:
        return 400, str(error)
    event = json.loads(raw_body)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "InvalidSignature",
    "chift_signature",
    "standard_signature",
    "verify",
    "verify_chift",
    "verify_standard",
]

DEFAULT_TOLERANCE_SECONDS = 5 * 60


class InvalidSignature(ValueError):
    """The request is not a genuine, fresh hookline delivery; ``str(error)`` says why."""


def _secret_bytes(secret: str | bytes) -> bytes:
    """Standard Webhooks key: ``whsec_`` + base64 is decoded, anything else is UTF-8."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after all: hookline then signs with the text, as below
    return secret.encode("utf-8")


def chift_signature(body: bytes, secret: str) -> str:
    """The expected ``X-Chift-Signature`` value for ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(body: bytes, secret: str | bytes, msg_id: str, timestamp: str) -> str:
    """The expected ``webhook-signature`` entry (``v1,<base64>``) for ``body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works on plain dicts too."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def verify_chift(body: bytes, headers: Mapping[str, str], secret: str) -> None:
    """Check ``X-Chift-Signature``; raise :class:`InvalidSignature` when missing or wrong."""
    received = _header(headers, "X-Chift-Signature")
    if not received:
        raise InvalidSignature("missing X-Chift-Signature header")
    expected = chift_signature(body, secret)
    if not hmac.compare_digest(expected.encode(), received.strip().lower().encode()):
        raise InvalidSignature("X-Chift-Signature does not match the body and secret")


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check the Standard Webhooks headers; raise :class:`InvalidSignature` with the reason.

    ``tolerance`` bounds how far ``webhook-timestamp`` may be from ``now`` (either way), which
    rejects replayed requests; ``now`` defaults to the current Unix time.
    """
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if sent_at < current - tolerance:
        raise InvalidSignature("webhook-timestamp is too old (possible replay)")
    if sent_at > current + tolerance:
        raise InvalidSignature("webhook-timestamp is too far in the future")
    expected = standard_signature(body, secret, msg_id, timestamp).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(expected, candidate.encode()):
            return
    raise InvalidSignature("no webhook-signature matches the body and secret")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check both signatures of a hookline delivery; raise :class:`InvalidSignature` if any
    is missing, wrong or stale. Returns ``None`` when the request is genuine."""
    verify_chift(body, headers, secret)
    verify_standard(body, headers, secret, tolerance=tolerance, now=now)
