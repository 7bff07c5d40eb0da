"""The worker against real loopback receivers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import timedelta

import httpx
import standardwebhooks
from sqlalchemy import update

from hookline.api.app import create_app
from hookline.clock import FrozenClock
from hookline.delivery.worker import FUTILE_CLAIM_SPACING, ROOM_LINGER, claim_pause
from hookline.store.tables import delivery_queue, webhooks
from tests.delivery import factories as f
from tests.delivery.conftest import running_worker
from tests.receiver import Reply

CONN = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e5f"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


async def test_delivery_is_signed_and_carries_the_exact_payload(make_runtime, receiver) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    plain = await f.make_webhook(rt, account, receiver.url + "/plain", secret="s3cret-é")
    std = await f.make_webhook(rt, account, receiver.url + "/std", secret=WHSEC)
    emitted = await f.emit_event(rt, account, connectionid=CONN)
    async with running_worker(rt) as worker:
        requests = await receiver.wait_for(2)
        await worker.wait_recorded(2)
    by_path = {r.path: r for r in requests}
    assert set(by_path) == {"/plain", "/std"}
    for path, secret in (("/plain", "s3cret-é"), ("/std", WHSEC)):
        got = by_path[path]
        assert got.body == emitted.payload
        assert json.loads(got.body) == {
            "accountid": str(account),
            "event": "account.connection.deleted",
            "consumerid": emitted.body["consumerid"],
            "created": emitted.body["created"],
            "connectionid": CONN,
        }
        assert got.headers["Content-Type"] == "application/json"
        assert (
            got.headers["X-Chift-Signature"]
            == hmac.new(secret.encode(), got.body, hashlib.sha256).hexdigest()
        )
        key = secret if secret.startswith("whsec_") else secret.encode()
        standardwebhooks.Webhook(key).verify(got.body, got.headers)  # raises if wrong
        assert got.headers["webhook-id"] in {str(d) for d in emitted.delivery_ids}
    for hook in (plain, std):
        (log,) = await f.logs(rt, hook)
        assert (
            log.outcome,
            log.http_status,
            log.attempt,
            log.response_excerpt,
            log.error_class,
        ) == ("delivered", 200, 1, "ok", None)
        assert log.event == "account.connection.deleted" and log.account_id == account
        row = await f.delivery(rt, log.delivery_id)
        assert (row.status, row.attempts, row.last_http_status) == ("delivered", 1, 200)
    assert await f.queued(rt) == []


async def test_no_secret_no_signature(make_runtime, receiver) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/open")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        (got,) = await receiver.wait_for(1)
        await worker.wait_recorded(1)
    assert "X-Chift-Signature" not in got.headers
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"] == str(emitted.delivery_ids[0])


async def test_cookies_set_by_a_receiver_are_never_sent_back(make_runtime, receiver) -> None:
    """One receiver's Set-Cookie must not ride along on later deliveries to that host."""
    rt = await make_runtime()
    receiver.default = Reply(200, b"ok", {"Set-Cookie": "session=abc; Path=/"})
    account = await f.make_account(rt)
    # A host name, not an IP: aiohttp's default jar keeps cookies only for host names.
    await f.make_webhook(rt, account, f"http://localhost:{receiver.port}/jar")
    async with running_worker(rt) as worker:
        await f.emit_event(rt, account)
        await receiver.wait_for(1)
        await worker.wait_recorded(1)
        await f.emit_event(rt, account)
        requests = await receiver.wait_for(2)
    assert [r.path for r in requests] == ["/jar", "/jar"]
    assert all("Cookie" not in r.headers for r in requests)


async def test_retries_until_the_receiver_recovers(make_runtime, receiver) -> None:
    rt = await make_runtime()
    receiver.replies = [Reply(500, b"boom"), Reply(503), Reply(200)]
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/flaky")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        requests = await receiver.wait_for(3)
        await worker.wait_recorded(3)
    assert {r.headers["webhook-id"] for r in requests} == {str(emitted.delivery_ids[0])}
    assert len({r.headers["webhook-timestamp"] for r in requests}) >= 1
    logs = await f.logs(rt, hook)
    assert [(x.attempt, x.outcome, x.http_status, x.error_class) for x in logs] == [
        (1, "retry", 500, "HTTP500"),
        (2, "retry", 503, "HTTP503"),
        (3, "delivered", 200, None),
    ]
    assert logs[0].response_excerpt == "boom"
    assert logs[0].next_attempt_at is not None and logs[2].next_attempt_at is None
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts, row.last_http_status) == ("delivered", 3, 200)
    assert (await f.webhook(rt, hook)).failing_since is None
    assert await f.queued(rt) == []


async def test_schedule_exhausted_fails_and_marks_the_webhook_failing(
    make_runtime, receiver
) -> None:
    rt = await make_runtime()
    receiver.default = Reply(502)
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/down")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        await receiver.wait_for(3)
        await worker.wait_recorded(3)
    logs = await f.logs(rt, hook)
    assert [x.outcome for x in logs] == ["retry", "retry", "failed"]
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts, row.last_http_status) == ("failed", 3, 502)
    assert (await f.webhook(rt, hook)).failing_since is not None
    assert (await f.webhook(rt, hook)).status == "active"
    assert len(receiver.requests) == 3
    assert await f.queued(rt) == []


async def test_retry_after_is_honoured(make_runtime, receiver) -> None:
    clock = FrozenClock()
    rt = await make_runtime(clock, retry_schedule=[0, 5, 5])
    receiver.replies = [Reply(429, headers={"Retry-After": "120"}), Reply(200)]
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/limited")
    await f.emit_event(rt, account)
    start = clock.now()
    async with running_worker(rt) as worker:
        await receiver.wait_for(1)
        await worker.wait_recorded(1)
        (first,) = await f.logs(rt, hook)
        assert (first.outcome, first.http_status) == ("retry", 429)
        assert first.next_attempt_at == start + timedelta(seconds=120)
        clock.advance(119)
        worker.wake()
        clock.advance(1)
        worker.wake()
        await receiver.wait_for(2)
        await worker.wait_recorded(2)
    assert [x.outcome for x in await f.logs(rt, hook)] == ["retry", "delivered"]


async def test_410_disables_the_webhook(make_runtime, receiver) -> None:
    rt = await make_runtime()
    receiver.default = Reply(410, b"gone")
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/gone")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        await receiver.wait_for(1)
        await worker.wait_recorded(1)
        again = await f.emit_event(rt, account)  # no delivery for an inactive webhook
    (log,) = await f.logs(rt, hook)
    assert (log.outcome, log.http_status, log.error_class) == ("disabled", 410, "HTTP410")
    row = await f.webhook(rt, hook)
    assert row.status == "inactive" and "410" in row.disabled_reason
    assert (await f.delivery(rt, emitted.delivery_ids[0])).status == "failed"
    assert again.delivery_ids == ()
    assert len(receiver.requests) == 1


async def test_other_4xx_fails_without_retry(make_runtime, receiver) -> None:
    rt = await make_runtime()
    receiver.default = Reply(400, b"bad")
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/strict")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        await receiver.wait_for(1)
        await worker.wait_recorded(1)
    (log,) = await f.logs(rt, hook)
    assert (log.outcome, log.http_status, log.error_class, log.next_attempt_at) == (
        "failed",
        400,
        "HTTP400",
        None,
    )
    assert (await f.delivery(rt, emitted.delivery_ids[0])).status == "failed"
    assert (await f.webhook(rt, hook)).status == "active"
    assert len(receiver.requests) == 1 and await f.queued(rt) == []


async def test_slow_receiver_times_out_and_is_retried(make_runtime, receiver) -> None:
    rt = await make_runtime(delivery_timeout=0.3, retry_schedule=[0, 60])
    receiver.default = Reply(200, delay=3.0)
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/slow")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        await worker.wait_recorded(1)
    (log,) = await f.logs(rt, hook)
    assert (log.outcome, log.http_status) == ("retry", 0)
    assert log.error_class == "TimeoutError"  # the whole attempt's timeout
    assert log.duration_ms >= 250
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts, row.last_http_status) == ("pending", 1, None)
    (queued,) = await f.queued(rt)
    assert queued.attempt == 1 and queued.lease_owner is None


async def test_internal_destinations_are_refused_without_allowlist(make_runtime, receiver) -> None:
    rt = await make_runtime(outbound_allowlist=[])
    account = await f.make_account(rt)
    by_ip = await f.make_webhook(rt, account, receiver.url + "/ip")
    by_name = await f.make_webhook(rt, account, f"http://localhost:{receiver.port}/name")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as worker:
        await worker.wait_recorded(2)
    for hook in (by_ip, by_name):
        (log,) = await f.logs(rt, hook)
        assert (log.outcome, log.http_status, log.error_class) == ("failed", 0, "BlockedAddress")
        assert "refused" in log.response_excerpt
    for delivery_id in emitted.delivery_ids:
        assert (await f.delivery(rt, delivery_id)).status == "failed"
    assert receiver.requests == []


async def test_inactive_webhook_receives_nothing(make_runtime, receiver) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/paused")
    emitted = await f.emit_event(rt, account)  # queued while active...
    async with rt.db.transaction() as conn:  # ...then the webhook is switched off
        await conn.execute(update(webhooks).where(webhooks.c.id == hook).values(status="inactive"))
    async with running_worker(rt) as worker:
        await worker.wait_recorded(1)
    assert receiver.requests == []
    assert await f.logs(rt, hook) == []
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts) == ("failed", 0)
    assert await f.queued(rt) == []


async def test_webhook_failing_too_long_is_disabled(make_runtime, receiver) -> None:
    clock = FrozenClock()
    rt = await make_runtime(
        clock, retry_schedule=[0, 10, 10, 10], disable_after_failing_seconds=3600
    )
    receiver.default = Reply(500)
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/dying")
    first = await f.emit_event(rt, account)
    started = clock.now()
    async with running_worker(rt) as worker:
        await worker.wait_recorded(1)
        assert (await f.webhook(rt, hook)).failing_since == started
        clock.advance(3600)
        worker.wake()
        await worker.wait_recorded(2)
    logs = await f.logs(rt, hook)
    assert [(x.attempt, x.outcome) for x in logs] == [(1, "retry"), (2, "disabled")]
    row = await f.webhook(rt, hook)
    assert row.status == "inactive" and row.disabled_reason.startswith("failing since")
    assert (await f.delivery(rt, first.delivery_ids[0])).status == "failed"
    assert await f.queued(rt) == []


async def test_metrics_are_exposed(make_runtime, receiver) -> None:
    rt = await make_runtime()
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/m")
    app = create_app(rt, run_background=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        before = _samples((await http.get("/metrics")).text)
        await f.emit_event(rt, account)
        await f.emit_event(rt, account)
        queued = _samples((await http.get("/metrics")).text)
        assert queued["hookline_delivery_queue_depth"] == 2.0
        assert queued["hookline_delivery_queue_due"] == 2.0
        async with running_worker(rt) as worker:
            await worker.wait_recorded(2)
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    delivered = 'hookline_delivery_attempts_total{outcome="delivered"}'
    assert after[delivered] - before[delivered] == 2.0
    count = "hookline_delivery_attempt_duration_seconds_count"
    assert after[count] - before[count] == 2.0
    assert after["hookline_delivery_queue_depth"] == 0.0
    assert after["hookline_delivery_oldest_due_age_seconds"] == 0.0


def _samples(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_in_process_wake_after_commit_beats_the_poll(make_runtime, receiver) -> None:
    rt = await make_runtime(delivery_poll_seconds=120)
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/wake")
    async with running_worker(rt) as worker:
        await asyncio.wait_for(worker.idle.wait(), timeout=10)  # waiting on its 120 s poll
        emitted = await f.emit_event(rt, account)
        (got,) = await receiver.wait_for(1, timeout=10)
        await worker.wait_recorded(1)
    assert got.headers["webhook-id"] == str(emitted.delivery_ids[0])


async def test_a_delivery_due_later_is_claimed_when_due_not_at_the_poll(
    make_runtime, receiver
) -> None:
    """Nothing wakes the worker for a row that becomes due later (a retry left by another
    worker, say): the timer armed from the next due time does, well before the poll."""
    rt = await make_runtime(delivery_poll_seconds=120)
    account = await f.make_account(rt)
    await f.make_webhook(rt, account, receiver.url + "/later")
    emitted = await f.emit_event(rt, account)
    async with rt.db.transaction() as conn:
        await conn.execute(
            update(delivery_queue).values(available_at=rt.clock.now() + timedelta(seconds=1))
        )
    async with running_worker(rt) as worker:
        (got,) = await receiver.wait_for(1, timeout=15)
        await worker.wait_recorded(1)
    assert got.headers["webhook-id"] == str(emitted.delivery_ids[0])


def test_a_woken_claimer_waits_only_after_two_futile_claims() -> None:
    assert claim_pause(0, 0.0) == 0.0  # the last claim found work: claim at once
    assert claim_pause(1, 0.0) == 0.0  # one empty claim (its work claimed just before)
    assert claim_pause(2, 0.001) == FUTILE_CLAIM_SPACING - 0.001
    assert claim_pause(5, 0.0) == FUTILE_CLAIM_SPACING
    assert claim_pause(5, FUTILE_CLAIM_SPACING * 2) == 0.0  # spaced enough already
    assert claim_pause(0, 0.0, limited=True) == ROOM_LINGER  # a drain gathers room first


async def test_requests_to_one_host_never_exceed_the_per_host_limit(make_runtime) -> None:
    from aiohttp import web

    in_flight, peak = 0, 0
    full, over, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 2:
            full.set()
        if in_flight > 2:
            over.set()
        await gate.wait()
        in_flight -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", held)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        rt = await make_runtime(delivery_per_host_concurrency=2, delivery_concurrency=16)
        account = await f.make_account(rt)
        await f.make_webhook(rt, account, url + "/a")
        await f.make_webhook(rt, account, url + "/b", event=f.EVENT)  # same host, other path
        for _ in range(3):
            await f.emit_event(rt, account)  # 6 deliveries to one host
        async with running_worker(rt) as worker:
            await asyncio.wait_for(full.wait(), timeout=10)
            await asyncio.wait_for(worker.idle.wait(), timeout=10)  # all six claimed
            # Nothing may join the two held requests (a bounded wait for an absence).
            assert not await _happens(over, within=0.5)
            gate.set()
            await worker.wait_recorded(6)
        assert peak == 2
    finally:
        gate.set()
        await runner.cleanup()


async def _happens(event: asyncio.Event, *, within: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout=within)
    except TimeoutError:
        return False
    return True


async def test_a_live_worker_keeps_its_lease_while_a_request_outlasts_it(
    make_runtime, receiver
) -> None:
    """The request takes 2.5 leases: the sending worker renews its lease meanwhile, so a second
    worker polling all along never takes the delivery over and sends it again."""
    # A 2 s lease (renewed every 0.67 s): with 1 s, a loaded machine sometimes delayed a
    # renewal past the lease's end, and the second worker rightly took the delivery over.
    rt = await make_runtime(
        delivery_lease_seconds=2.0, delivery_poll_seconds=0.1, delivery_timeout=10.0
    )
    receiver.default = Reply(200, delay=5.0)
    account = await f.make_account(rt)
    hook = await f.make_webhook(rt, account, receiver.url + "/long")
    emitted = await f.emit_event(rt, account)
    async with running_worker(rt) as sending:
        await receiver.wait_for(1)
        async with running_worker(rt) as other:
            await sending.wait_recorded(1, timeout=15)
            assert other.recorded_count == 0
    assert len(receiver.requests) == 1
    (log,) = await f.logs(rt, hook)
    assert (log.outcome, log.attempt) == ("delivered", 1)
    row = await f.delivery(rt, emitted.delivery_ids[0])
    assert (row.status, row.attempts) == ("delivered", 1)
