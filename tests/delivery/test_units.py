"""Pure parts of the engine: signatures, outcome policy, the SSRF guard."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from hookline.delivery import policy
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.delivery.ssrf import BlockedAddress, OutboundGuard, blocked_reason

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
BODY = b'{"accountid":"a","event":"account.connection.deleted","created":1}'


@pytest.mark.parametrize(
    "secret", ["plain-secret-é", "whsec_" + base64.b64encode(b"k" * 24).decode()]
)
def test_signatures_verify_with_standardwebhooks_and_by_hand(secret: str) -> None:
    headers = delivery_headers(
        message_id="msg_1",
        timestamp=int(NOW.timestamp()),
        body=BODY,
        key=SigningKey.from_secret(secret),
    )
    assert (
        headers["X-Chift-Signature"] == hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    )
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    expected = base64.b64encode(
        hmac.new(key, b"msg_1.%d.%s" % (int(NOW.timestamp()), BODY), hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == "v1," + expected
    verifier = standardwebhooks.Webhook(secret if secret.startswith("whsec_") else key)
    fresh = delivery_headers(
        message_id="msg_1",
        timestamp=int(datetime.now(UTC).timestamp()),
        body=BODY,
        key=SigningKey.from_secret(secret),
    )
    assert verifier.verify(BODY, fresh) is not None


def test_no_secret_means_no_signature_headers() -> None:
    headers = delivery_headers(message_id="m", timestamp=5, body=BODY, key=None)
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "hookline",
        "webhook-id": "m",
        "webhook-timestamp": "5",
    }


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, policy.Verdict.DELIVERED),
        (204, policy.Verdict.DELIVERED),
        (500, policy.Verdict.RETRY),
        (503, policy.Verdict.RETRY),
        (429, policy.Verdict.RETRY),
        (410, policy.Verdict.GONE),
        (400, policy.Verdict.FAIL),
        (404, policy.Verdict.FAIL),
        (301, policy.Verdict.FAIL),
        (None, policy.Verdict.RETRY),
    ],
)
def test_classify(status: int | None, verdict: policy.Verdict) -> None:
    assert policy.classify(status) is verdict


def test_blocked_destinations_are_not_retried() -> None:
    assert policy.classify(None, retryable_error=False) is policy.Verdict.FAIL


def test_retry_schedule_entry_i_is_the_delay_before_attempt_i_plus_1() -> None:
    schedule = [0, 5, 300]
    assert policy.retry_delay(schedule, 1, jitter=0) == 5.0
    assert policy.retry_delay(schedule, 2, jitter=0) == 300.0
    assert policy.retry_delay(schedule, 3, jitter=0) is None
    rng = random.Random(1)
    delays = {policy.retry_delay(schedule, 2, jitter=0.1, rng=rng) for _ in range(50)}
    assert all(270.0 <= d <= 330.0 for d in delays) and len(delays) > 1


def test_retry_after_seconds_and_http_date() -> None:
    assert policy.parse_retry_after("120", NOW) == 120.0
    assert policy.parse_retry_after("Thu, 26 Nov 2026 12:01:30 GMT", NOW) == 90.0
    assert policy.parse_retry_after("soon", NOW) is None
    assert policy.parse_retry_after(None, NOW) is None


def _decide(**overrides: object) -> policy.Decision:
    values: dict = dict(
        verdict=policy.Verdict.RETRY,
        attempt=1,
        now=NOW,
        schedule=[0, 5, 300],
        jitter=0.0,
        retry_after=None,
        retry_after_max=600.0,
        failing_since=None,
        disable_after_seconds=3600.0,
    )
    values.update(overrides)
    return policy.decide(**values)


def test_decisions() -> None:
    assert _decide() == policy.Decision("retry", NOW + timedelta(seconds=5))
    assert _decide(retry_after="42") == policy.Decision("retry", NOW + timedelta(seconds=42))
    assert _decide(retry_after="99999") == policy.Decision("retry", NOW + timedelta(seconds=600))
    assert _decide(attempt=3) == policy.Decision("failed")
    assert _decide(verdict=policy.Verdict.FAIL) == policy.Decision("failed")
    assert _decide(verdict=policy.Verdict.DELIVERED) == policy.Decision("delivered")
    gone = _decide(verdict=policy.Verdict.GONE)
    assert gone.outcome == "disabled" and "410" in (gone.disable_reason or "")
    still_young = _decide(failing_since=NOW - timedelta(seconds=3599))
    assert still_young.outcome == "retry"
    too_old = _decide(failing_since=NOW - timedelta(seconds=3600))
    assert too_old.outcome == "disabled" and too_old.next_attempt_at is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "100.64.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",
    ],
)
def test_internal_addresses_are_blocked(address: str) -> None:
    import ipaddress

    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    import ipaddress

    assert blocked_reason(ipaddress.ip_address(address)) is None


async def test_guard_checks_after_resolution_and_honours_the_allowlist() -> None:
    guard = OutboundGuard([])
    for url in (
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/",
        "http://10.0.0.5/",
    ):
        with pytest.raises(BlockedAddress):
            await guard.check_url(url)
    await guard.check_url("http://93.184.216.34/hook")
    allowed = OutboundGuard(["127.0.0.0/8", "internal.example", "10.0.0.5"])
    await allowed.check_url("http://127.0.0.1:8080/x")
    await allowed.check_url("http://internal.example/x")  # allowed by name: not resolved
    await allowed.check_url("http://10.0.0.5/")
    with pytest.raises(BlockedAddress):
        await allowed.check_url("http://10.0.0.6/")


def test_startup_objects_are_frozen_and_collections_spaced_out() -> None:
    import gc

    from hookline.runtime import freeze_startup_objects

    threshold = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (20_000, 20, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
