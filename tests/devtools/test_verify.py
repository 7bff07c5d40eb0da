"""hookline.verify: both signature schemes, cross-checked with the ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookline import verify as verify_module
from hookline.verify import (
    InvalidSignature,
    chift_signature,
    standard_signature,
    verify,
    verify_chift,
    verify_standard,
)

BODY = b'{"accountid":"a","event":"account.connection.up","consumerid":null,"created":1}'
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PLAIN = "my plain signing secret"


def signed_headers(
    body: bytes, secret: str, *, msg_id: str = "msg_1", timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Chift-Signature": chift_signature(body, secret),
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": standard_signature(body, secret, msg_id, ts),
    }


def test_chift_signature_is_hex_hmac_of_the_body_keyed_by_the_utf8_secret() -> None:
    expected = hmac.new(PLAIN.encode(), BODY, hashlib.sha256).hexdigest()
    assert chift_signature(BODY, PLAIN) == expected
    # Even a whsec_ secret is used as text for X-Chift-Signature.
    assert (
        chift_signature(BODY, WHSEC) == hmac.new(WHSEC.encode(), BODY, hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize("secret", [WHSEC, PLAIN])
def test_genuine_request_passes_both_checks(secret: str) -> None:
    assert verify(BODY, signed_headers(BODY, secret), secret) is None


def test_signatures_made_by_standardwebhooks_are_accepted() -> None:
    lib = Webhook(WHSEC)
    now = datetime.now(UTC)
    signature = lib.sign("msg_2", now, BODY.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    verify_standard(BODY, headers, WHSEC)
    # A plain (non-whsec) secret is used as its UTF-8 bytes on both sides.
    raw = Webhook(PLAIN.encode())
    headers["webhook-signature"] = raw.sign("msg_2", now, BODY.decode())
    verify_standard(BODY, headers, PLAIN)


@pytest.mark.parametrize("secret", [WHSEC, PLAIN])
def test_our_signatures_are_accepted_by_standardwebhooks(secret: str) -> None:
    lib = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
    assert lib.verify(BODY, signed_headers(BODY, secret)) == {
        "accountid": "a",
        "event": "account.connection.up",
        "consumerid": None,
        "created": 1,
    }


def test_tampered_body_is_rejected_by_both_schemes() -> None:
    headers = signed_headers(BODY, WHSEC)
    tampered = BODY.replace(b'"created":1', b'"created":2')
    with pytest.raises(InvalidSignature, match="X-Chift-Signature does not match"):
        verify(tampered, headers, WHSEC)
    with pytest.raises(InvalidSignature, match="no webhook-signature matches"):
        verify_standard(tampered, headers, WHSEC)
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(tampered, headers)


def test_wrong_secret_is_rejected() -> None:
    headers = signed_headers(BODY, PLAIN)
    with pytest.raises(InvalidSignature, match="X-Chift-Signature does not match"):
        verify_chift(BODY, headers, PLAIN + "x")
    with pytest.raises(InvalidSignature, match="no webhook-signature matches"):
        verify_standard(BODY, headers, PLAIN + "x")


def test_stale_and_future_timestamps_are_rejected_within_tolerance() -> None:
    now = 1_800_000_000
    old = signed_headers(BODY, WHSEC, timestamp=now - 301)
    with pytest.raises(InvalidSignature, match="too old"):
        verify(BODY, old, WHSEC, now=now)
    verify(BODY, old, WHSEC, now=now, tolerance=302)  # a wider tolerance accepts it
    future = signed_headers(BODY, WHSEC, timestamp=now + 301)
    with pytest.raises(InvalidSignature, match="too far in the future"):
        verify(BODY, future, WHSEC, now=now)
    verify(BODY, signed_headers(BODY, WHSEC, timestamp=now - 299), WHSEC, now=now)


def test_any_of_several_signatures_may_match_and_headers_are_case_insensitive() -> None:
    headers = signed_headers(BODY, WHSEC)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    lowered = {key.lower(): value for key, value in headers.items()}
    verify(BODY, lowered, WHSEC)
    upper = {key.upper(): value for key, value in headers.items()}
    verify(BODY, upper, WHSEC)


@pytest.mark.parametrize(
    "missing", ["X-Chift-Signature", "webhook-id", "webhook-timestamp", "webhook-signature"]
)
def test_missing_headers_are_rejected_with_the_reason(missing: str) -> None:
    headers = signed_headers(BODY, WHSEC)
    del headers[missing]
    with pytest.raises(InvalidSignature, match="missing"):
        verify(BODY, headers, WHSEC)


def test_non_integer_timestamp_is_rejected() -> None:
    headers = signed_headers(BODY, WHSEC)
    headers["webhook-timestamp"] = "soon"
    with pytest.raises(InvalidSignature, match="not an integer"):
        verify_standard(BODY, headers, WHSEC)


def test_the_helper_imports_nothing_outside_the_standard_library() -> None:
    """Except ``cryptography``, imported by ``verify_ed25519`` only, when called."""
    import ast
    import sys

    tree = ast.parse(Path(verify_module.__file__).read_text())
    (ed25519,) = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "verify_ed25519"
    ]
    tree.body.remove(ed25519)
    inside = {node.module for node in ast.walk(ed25519) if isinstance(node, ast.ImportFrom)}
    assert {module.split(".")[0] for module in inside if module} == {"cryptography"}
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules - {"__future__"} <= set(sys.stdlib_module_names)
    assert modules == {"__future__", "base64", "binascii", "hashlib", "hmac", "time", "collections"}


def test_header_objects_of_common_servers_work() -> None:
    """http.server gives an email.message.Message, aiohttp a CIMultiDictProxy."""
    from email.message import Message

    from multidict import CIMultiDict, CIMultiDictProxy

    headers = signed_headers(BODY, WHSEC)
    message = Message()
    for key, value in headers.items():
        message[key.upper()] = value
    verify(BODY, message, WHSEC)  # type: ignore[arg-type]
    verify(BODY, CIMultiDictProxy(CIMultiDict(headers)), WHSEC)
