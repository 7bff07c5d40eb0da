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

A webhook created with ``"signature_scheme": "ed25519"`` is signed only with Standard
Webhooks' asymmetric scheme: ``webhook-signature: v1a,<base64 Ed25519 signature of
"id.timestamp.body">``, verified with the webhook's public key (``whpk_...``) by
:func:`verify_ed25519` (the one function here that needs the ``cryptography`` package).

During a secret rotation's overlap ``webhook-signature`` carries the new and the previous
key's signatures (space-separated) and ``X-Chift-Signature`` is computed with the new
secret: pass both secrets (``secret=[new, old]``, any may match) while you switch over.

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
from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "InvalidSignature",
    "chift_signature",
    "standard_signature",
    "verify",
    "verify_chift",
    "verify_ed25519",
    "verify_standard",
]

Secrets = str | bytes | Sequence[str | bytes]

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


def _each(secret: Secrets) -> list[str | bytes]:
    """One secret, or several (a rotation): any of them may have signed."""
    return [secret] if isinstance(secret, str | bytes) else list(secret)


def verify_chift(body: bytes, headers: Mapping[str, str], secret: str | Sequence[str]) -> None:
    """Check ``X-Chift-Signature``; raise :class:`InvalidSignature` when missing or wrong."""
    received = _header(headers, "X-Chift-Signature")
    if not received:
        raise InvalidSignature("missing X-Chift-Signature header")
    got = received.strip().lower().encode()
    for candidate in _each(secret):
        text = candidate.decode() if isinstance(candidate, bytes) else candidate
        if hmac.compare_digest(chift_signature(body, text).encode(), got):
            return
    raise InvalidSignature("X-Chift-Signature does not match the body and secret")


def _standard_headers(
    headers: Mapping[str, str], tolerance: float, now: float | None
) -> tuple[str, str, str]:
    """``webhook-id``, ``webhook-timestamp`` (checked fresh) and ``webhook-signature``."""
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
    return msg_id, timestamp, signatures


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secret: Secrets,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check the Standard Webhooks headers; raise :class:`InvalidSignature` with the reason.

    ``tolerance`` bounds how far ``webhook-timestamp`` may be from ``now`` (either way), which
    rejects replayed requests; ``now`` defaults to the current Unix time.
    """
    msg_id, timestamp, signatures = _standard_headers(headers, tolerance, now)
    received = [candidate.encode() for candidate in signatures.split()]
    for key in _each(secret):
        expected = standard_signature(body, key, msg_id, timestamp).encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in received):
            return
    raise InvalidSignature("no webhook-signature matches the body and secret")


def verify_ed25519(
    body: bytes,
    headers: Mapping[str, str],
    public_key: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a ``v1a`` (Ed25519) ``webhook-signature`` against the webhook's ``whpk_`` public
    key (or several, e.g. the old and the new one around a rotation). Needs ``cryptography``."""
    from cryptography.exceptions import InvalidSignature as BadEd25519
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    msg_id, timestamp, signatures = _standard_headers(headers, tolerance, now)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    keys = []
    for text in [public_key] if isinstance(public_key, str) else list(public_key):
        try:
            raw = base64.b64decode(text.removeprefix("whpk_"), validate=True)
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            raise InvalidSignature(f"not an Ed25519 public key: {text[:12]}...") from None
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for key in keys:
            try:
                key.verify(signature, signed)
                return
            except BadEd25519:
                pass
    raise InvalidSignature("no v1a webhook-signature matches the body and public key")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check both signatures of a hookline delivery; raise :class:`InvalidSignature` if any
    is missing, wrong or stale. Returns ``None`` when the request is genuine."""
    verify_chift(body, headers, secret)
    verify_standard(body, headers, secret, tolerance=tolerance, now=now)
