"""Ed25519 webhooks (Standard Webhooks ``v1a``), verified with ``cryptography`` directly.

The pinned ``standardwebhooks`` library (1.1.0) knows only ``v1`` (HMAC), so the independent
check here is the Ed25519 implementation of the ``cryptography`` package, fed from the spec.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from hookline.store.tables import webhooks
from hookline.verify import InvalidSignature, verify_ed25519
from tests.delivery_api.control_helpers import frozen_stack, worker_of
from tests.delivery_api.helpers import assert_error, connection_event, create_webhook
from tests.receiver import Received


def _public(whpk: str) -> Ed25519PublicKey:
    assert whpk.startswith("whpk_")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(whpk.removeprefix("whpk_")))


def _signed(request: Received) -> bytes:
    headers = request.headers
    return f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body


def _v1a(request: Received) -> list[bytes]:
    entries = request.headers["webhook-signature"].split(" ")
    assert all(entry.startswith("v1a,") for entry in entries)
    return [base64.b64decode(entry.removeprefix("v1a,")) for entry in entries]


async def test_v1a_signature_verifies_with_an_independent_ed25519(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(stack.api, url=f"{receiver.url}/ed", signature_scheme="ed25519")
        assert hook["signature_scheme"] == "ed25519"
        public = _public(hook["public_key"])
        async with worker_of(stack.runtime) as worker:
            await stack.post_event(connection_event())
            [got] = await receiver.wait_for(1)
            await worker.wait_recorded(1)
        [signature] = _v1a(got)
        public.verify(signature, _signed(got))  # raises if wrong
        with pytest.raises(BadSignature):
            public.verify(signature, _signed(got) + b" ")
        assert "X-Chift-Signature" not in got.headers  # no shared secret to compute it with
        now = stack.clock.timestamp()
        verify_ed25519(got.body, got.headers, hook["public_key"], now=now)
        with pytest.raises(InvalidSignature):
            verify_ed25519(
                got.body.replace(b"active", b"inactive"), got.headers, hook["public_key"], now=now
            )
        # The private key is encrypted at rest and never returned.
        async with stack.runtime.db.read() as conn:
            sealed = (await conn.execute(select(webhooks.c.secret_encrypted))).scalar_one()
        assert "whsk_" not in sealed and "whsk_" in stack.runtime.secret_box.decrypt(sealed)
        listed = await stack.api.get("/webhooks")
        assert "whsk_" not in listed.text and hook["public_key"] in listed.text


async def test_ed25519_rotation_signs_with_both_keys_during_the_overlap(database, receiver) -> None:
    async with frozen_stack(database) as stack:
        hook = await create_webhook(stack.api, url=f"{receiver.url}/ed", signature_scheme="ed25519")
        rotated = await stack.api.post(
            f"/webhooks/{hook['webhookid']}/rotate-secret", json={"overlap_seconds": 600}
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["signingsecret"] is None  # nothing secret to show
        old, new = _public(hook["public_key"]), _public(rotated.json()["public_key"])
        assert rotated.json()["public_key"] != hook["public_key"]
        async with worker_of(stack.runtime) as worker:
            await stack.post_event(connection_event())
            [during] = await receiver.wait_for(1)
            await worker.wait_recorded(1)
            await stack.advance(601)
            await stack.post_event(connection_event())
            requests = await receiver.wait_for(2)
            await worker.wait_recorded(2)
        first, second = _v1a(during)
        new.verify(first, _signed(during))
        old.verify(second, _signed(during))
        [only] = _v1a(requests[1])
        new.verify(only, _signed(requests[1]))
        with pytest.raises(BadSignature):
            old.verify(only, _signed(requests[1]))


async def test_ed25519_refuses_a_shared_secret(database) -> None:
    async with frozen_stack(database) as stack:
        api = stack.api
        given = await api.post(
            "/webhooks",
            json={
                "event": "account.connection.created",
                "url": "https://example.com/ed",
                "signature_scheme": "ed25519",
                "signingsecret": "shared",
            },
        )
        assert_error(given, 400, "ERROR_INVALID_SECRET")
        unknown = await api.post(
            "/webhooks",
            json={
                "event": "account.connection.created",
                "url": "https://example.com/ed",
                "signature_scheme": "rsa",
            },
        )
        assert unknown.status_code == 422
        hook = await create_webhook(api, signature_scheme="ed25519")
        path = f"/webhooks/{hook['webhookid']}"
        assert_error(
            await api.patch(path, json={"signingsecret": "x"}), 400, "ERROR_INVALID_SECRET"
        )
        assert_error(
            await api.post(f"{path}/rotate-secret", json={"signingsecret": "x"}),
            400,
            "ERROR_INVALID_SECRET",
        )
        assert (await api.get("/webhooks")).json()[0]["public_key"] == hook["public_key"]
