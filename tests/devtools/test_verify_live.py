"""hookline.verify against real deliveries made by a running hookline, cross-checked with the
``standardwebhooks`` library."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookline.verify import InvalidSignature, verify, verify_chift, verify_standard
from tests.devtools.test_listen_trigger import new_account

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PLAIN = "plain-text secret ✓"


async def capture_deliveries(server_url: str, key: dict[str, str], receiver: Any) -> list:
    """Two webhooks (a whsec_ and a plain secret), one event: two real signed deliveries."""
    async with httpx.AsyncClient(base_url=server_url) as http:
        token = (await http.post("/token", json=key)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        for path, secret in (("/whsec", WHSEC), ("/plain", PLAIN)):
            created = await http.post(
                "/webhooks",
                headers=auth,
                json={
                    "event": "account.flow.executed",
                    "url": receiver.url + path,
                    "signingsecret": secret,
                },
            )
            assert created.status_code == 200, created.text
        sent = await http.post(
            "/events",
            headers=auth,
            json={
                "event": "account.flow.executed",
                "consumerid": "0192f3c4-0000-7000-8000-0000000000aa",
                "flowid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e6f",
                "syncid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e70",
                "status": "error",
                "executionid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e71",
                "parentexecutionid": "01965d2a-7c1e-7a55-8b0e-3f9a1c2d4e72",
            },
        )
        assert sent.status_code == 202, sent.text
    requests = await receiver.wait_for(2)
    return sorted(requests, key=lambda r: r.path)  # /plain, /whsec


async def test_real_deliveries_verify_and_tampering_is_caught(
    database: Any,
    live_server: Any,
    receiver: Any,
) -> None:
    server = live_server()
    key = await new_account(database.env())
    plain, whsec = await capture_deliveries(server.url, key, receiver)
    assert json.loads(whsec.body)["status"] == "error"
    for request, secret in ((plain, PLAIN), (whsec, WHSEC)):
        verify(request.body, request.headers, secret)
        lib = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
        assert lib.verify(request.body, request.headers)["event"] == "account.flow.executed"

        tampered = request.body.replace(b'"status":"error"', b'"status":"success"')
        assert tampered != request.body
        with pytest.raises(InvalidSignature, match="X-Chift-Signature does not match"):
            verify(tampered, request.headers, secret)
        with pytest.raises(InvalidSignature, match="no webhook-signature matches"):
            verify_standard(tampered, request.headers, secret)
        with pytest.raises(WebhookVerificationError):
            lib.verify(tampered, request.headers)

        with pytest.raises(InvalidSignature, match="does not match"):
            verify_chift(request.body, request.headers, secret + "x")
        with pytest.raises(InvalidSignature, match="no webhook-signature matches"):
            verify_standard(request.body, request.headers, "whsec_" + "A" * 32)

        sent_at = int(request.headers["webhook-timestamp"])
        verify(request.body, request.headers, secret, now=sent_at + 299)
        with pytest.raises(InvalidSignature, match="too old"):
            verify(request.body, request.headers, secret, now=sent_at + 301)
        with pytest.raises(InvalidSignature, match="too far in the future"):
            verify(request.body, request.headers, secret, now=sent_at - 301)
    # Both webhooks got the same event body; each delivery has its own webhook-id.
    assert plain.body == whsec.body
    assert plain.headers["webhook-id"] != whsec.headers["webhook-id"]
