"""Request signatures: ``X-Chift-Signature`` and the Standard Webhooks headers.

Both sign the exact body bytes that are sent, so a receiver must verify the raw body before
parsing it. Keys are derived once per webhook secret (:func:`SigningKey.from_secret`) because
a worker signs thousands of requests with the same few secrets.

What a webhook's encrypted secret holds (only this module reads it):

- a **plain secret** (every webhook that never rotated): HMAC signing, exactly as always;
- a **key set** (``hookline-keys:1:`` + JSON, see :class:`KeySet`): the scheme (``hmac`` or
  ``ed25519``), the current key and, during a rotation's overlap, the previous key and the
  Unix second the overlap ends. The worker already receives the encrypted value with each
  claimed delivery and caches one key object per value, so rotation and Ed25519 need nothing
  new on the claim path. A cached key still stops signing with the previous key at the end
  of the overlap: the check is one integer comparison with the request's timestamp.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

WHSEC_PREFIX = "whsec_"
WHSK_PREFIX = "whsk_"  # an Ed25519 private key (32-byte seed, base64): never leaves hookline
WHPK_PREFIX = "whpk_"  # an Ed25519 public key (32 bytes, base64): what receivers verify with
KEYSET_PREFIX = "hookline-keys:1:"


class Scheme(enum.StrEnum):
    HMAC = "hmac"
    ED25519 = "ed25519"


@dataclass(frozen=True, slots=True)
class KeySet:
    """A webhook's keys: the current one and, until ``previous_until``, the previous one."""

    scheme: Scheme
    current: str
    previous: str | None = None
    previous_until: int | None = None  # Unix seconds; signing with ``previous`` stops then

    def encode(self) -> str:
        """The text to encrypt. A plain HMAC secret without overlap stays a plain secret, so
        it signs through the plain fast path and reads like a never-rotated webhook's."""
        if self.scheme is Scheme.HMAC and self.previous is None:
            return self.current
        value: dict[str, object] = {"s": self.scheme.value, "c": self.current}
        if self.previous is not None:
            value.update(p=self.previous, u=self.previous_until)
        return KEYSET_PREFIX + json.dumps(value, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> KeySet:
        if not text.startswith(KEYSET_PREFIX):
            return cls(Scheme.HMAC, text)
        value = json.loads(text[len(KEYSET_PREFIX) :])
        return cls(Scheme(value["s"]), value["c"], value.get("p"), value.get("u"))

    def overlapping(self, now: int) -> bool:
        return self.previous is not None and now < (self.previous_until or 0)

    def expired(self, now: int) -> KeySet:
        """This key set without the previous key once its overlap has ended."""
        if self.previous is None or self.overlapping(now):
            return self
        return replace(self, previous=None, previous_until=None)

    def rotated(self, new: str, *, now: int, overlap_seconds: int) -> KeySet:
        """``new`` becomes current; the current key keeps signing for ``overlap_seconds``."""
        if overlap_seconds <= 0:
            return KeySet(self.scheme, new)
        return KeySet(self.scheme, new, self.current, now + overlap_seconds)


class SigningKey:
    """A plain HMAC secret, prepared for both signature schemes.

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
        """The key for a decrypted secret: a plain secret, or a key set (rotation, Ed25519)."""
        if secret.startswith(KEYSET_PREFIX):
            return _from_key_set(KeySet.decode(secret))
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

    def sign(self, headers: dict[str, str], message_id: str, timestamp: int, body: bytes) -> None:
        """Add this key's signature headers to ``headers`` (both MACs inline: this runs for
        every delivery)."""
        mac = self._chift.copy()
        mac.update(body)
        headers["X-Chift-Signature"] = mac.hexdigest()
        mac = self._standard.copy()
        mac.update(b"%s.%d." % (message_id.encode(), timestamp))
        mac.update(body)
        headers["webhook-signature"] = "v1," + base64.b64encode(mac.digest()).decode("ascii")


class RotatingKey(SigningKey):
    """An HMAC secret in a rotation's overlap: ``webhook-signature`` carries the new and the
    previous signature until ``until`` (request timestamps, so a cached key stops on time);
    ``X-Chift-Signature`` (one value only) is always the new secret's."""

    __slots__ = ("_previous", "_until")

    def __init__(self, current: str, previous: str, until: int) -> None:
        super().__init__(current.encode("utf-8"), standard_key(current))
        self._previous = SigningKey(previous.encode("utf-8"), standard_key(previous))
        self._until = until

    def sign(self, headers: dict[str, str], message_id: str, timestamp: int, body: bytes) -> None:
        headers["X-Chift-Signature"] = self.chift_signature(body)
        signature = self.standard_signature(message_id, timestamp, body)
        if timestamp < self._until:
            signature += " " + self._previous.standard_signature(message_id, timestamp, body)
        headers["webhook-signature"] = signature


class Ed25519Key(SigningKey):
    """Standard Webhooks' asymmetric scheme: ``webhook-signature: v1a,<base64 Ed25519
    signature of "id.timestamp.body">``. There is no shared secret, so no
    ``X-Chift-Signature``, and the HMAC parts of :class:`SigningKey` stay unset (a
    subclass only so that callers keep one key type). Signing costs ~35 us, ten times an
    HMAC key's."""

    __slots__ = ("_current", "_previous", "_until")

    def __init__(self, current: str, previous: str | None, until: int | None) -> None:
        self._current = private_key(current)
        self._previous = private_key(previous) if previous else None
        self._until = until or 0

    def sign(self, headers: dict[str, str], message_id: str, timestamp: int, body: bytes) -> None:
        message = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
        signature = "v1a," + base64.b64encode(self._current.sign(message)).decode("ascii")
        if self._previous is not None and timestamp < self._until:
            old = base64.b64encode(self._previous.sign(message)).decode("ascii")
            signature += " v1a," + old
        headers["webhook-signature"] = signature


def _from_key_set(keys: KeySet) -> SigningKey:
    if keys.scheme is Scheme.ED25519:
        return Ed25519Key(keys.current, keys.previous, keys.previous_until)
    if keys.previous is not None and keys.previous_until is not None:
        return RotatingKey(keys.current, keys.previous, keys.previous_until)
    return SigningKey(keys.current.encode("utf-8"), standard_key(keys.current))


def standard_key(secret: str) -> bytes:
    if secret.startswith(WHSEC_PREFIX):
        try:
            encoded = secret[len(WHSEC_PREFIX) :]
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass  # not valid base64: fall back to the raw text, like any other secret
    return secret.encode("utf-8")


def new_hmac_secret() -> str:
    """A generated ``whsec_`` secret: 24 random bytes, base64."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def new_ed25519_key() -> str:
    """A generated Ed25519 private key as ``whsk_`` + base64 of its 32-byte seed."""
    return WHSK_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def private_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text[len(WHSK_PREFIX) :]))


def public_key(private: str) -> str:
    """The ``whpk_`` public key of a ``whsk_`` private key."""
    raw = private_key(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return WHPK_PREFIX + base64.b64encode(raw).decode("ascii")


def delivery_headers(
    *, message_id: str, timestamp: int, body: bytes, key: SigningKey | None
) -> dict[str, str]:
    """Every header of one delivery request (signatures only when the webhook has a key)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "hookline",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        key.sign(headers, message_id, timestamp, body)
    return headers
