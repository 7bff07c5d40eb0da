"""Isolation by destination and by account, on SQLite and PostgreSQL (issue 18.1).

A hanging destination may hold only its own share of a worker, and one account's backlog
never stands in front of another account's first event. No timing is asserted: each test
checks what happened while the bad destination was still bad.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from hookline.store.tables import delivery_queue, webhook_logs
from tests.delivery import factories as f
from tests.delivery.conftest import running_worker
from tests.receiver import Receiver, Reply

# A small worker, so that the old scheduling (oldest first, up to the worker's capacity)
# fills it with the bad destination's deliveries: capacity 16 + 4 x 4 = 32; a destination
# may hold at most 10 (a third), and starts with 2 lanes.
SMALL = {
    "delivery_concurrency": 16,
    "delivery_batch_size": 4,
    "delivery_per_host_concurrency": 4,
    "delivery_slow_host_concurrency": 2,
    "delivery_timeout": 60.0,
}


class HeldServer:
    """A receiver that reads each request and answers only when released: a hanging host."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.arrived = 0
        self.gate = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> HeldServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._held)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def _held(self, request: web.Request) -> web.Response:
        await request.read()
        async with self._changed:
            self.in_flight += 1
            self.arrived += 1
            self.peak = max(self.peak, self.in_flight)
            self._changed.notify_all()
        await self.gate.wait()
        self.in_flight -= 1
        return web.Response(text="late")

    async def wait_in_flight(self, count: int, timeout: float = 15.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.in_flight >= count), timeout)

    async def stop(self) -> None:
        self.gate.set()
        if self._runner:
            await self._runner.cleanup()


async def leased(rt: Any, webhook_id: Any) -> int:
    async with rt.db.read() as conn:
        return (
            await conn.execute(
                select(func.count())
                .select_from(delivery_queue)
                .where(
                    delivery_queue.c.webhook_id == webhook_id,
                    delivery_queue.c.lease_owner.is_not(None),
                )
            )
        ).scalar_one()


async def test_a_hanging_destination_never_holds_the_capacity_others_need(
    make_runtime, receiver
) -> None:
    hanging = await HeldServer().start()
    try:
        rt = await make_runtime(**SMALL)
        other_account = await f.make_account(rt)
        bad = await f.make_webhook(rt, other_account, hanging.url + "/hang")
        await f.emit_many(rt, other_account, 40)  # older than anything the healthy one gets
        account = await f.make_account(rt)
        await f.make_webhook(rt, account, receiver.url + "/healthy")
        async with running_worker(rt) as worker:
            await hanging.wait_in_flight(2)
            await f.emit_many(rt, account, 5)
            healthy = await receiver.wait_for(5)
            # All of it happened while the hanging host still held every request it got.
            assert hanging.in_flight == 2 and not hanging.gate.is_set()
            assert hanging.peak == 2  # the lanes of a new destination
            assert await leased(rt, bad) <= 12  # its share (6 per slow lane), not the worker
            hanging.gate.set()
            await worker.wait_recorded(5 + 2)
        assert len({r.headers["webhook-id"] for r in healthy}) == 5
    finally:
        await hanging.stop()


async def test_a_backlog_of_one_account_does_not_delay_another_accounts_first_event(
    make_runtime, receiver
) -> None:
    slow = await Receiver().start()
    slow.default = Reply(200, delay=0.1)  # slow but working: about 40 requests/s on 4 lanes
    try:
        rt = await make_runtime(**SMALL)
        big = await f.make_account(rt)
        await f.make_webhook(rt, big, slow.url + "/backlog")
        backlog = 200
        await f.emit_many(rt, big, backlog)
        small = await f.make_account(rt)
        await f.make_webhook(rt, small, receiver.url + "/first")
        async with running_worker(rt) as worker:
            await slow.wait_for(10)  # the backlog is being worked through
            first = await f.emit_event(rt, small)
            (got,) = await receiver.wait_for(1)
            sent_of_backlog = len(slow.requests)
            await worker.wait_recorded(sent_of_backlog)
        assert got.headers["webhook-id"] == str(first.delivery_ids[0])
        # Oldest-first would have sent at least 200 - 32 of the backlog before it.
        assert sent_of_backlog < backlog // 2, sent_of_backlog
    finally:
        await slow.stop()


async def test_webhooks_sharing_a_destination_share_its_room(make_runtime) -> None:
    """Two webhooks on one hanging host: together they hold one destination's share."""
    hanging = await HeldServer().start()
    try:
        rt = await make_runtime(**SMALL)
        account = await f.make_account(rt)
        first = await f.make_webhook(rt, account, hanging.url + "/a")
        second = await f.make_webhook(rt, account, hanging.url + "/b")
        await f.emit_many(rt, account, 30)  # 60 deliveries to one destination
        async with running_worker(rt) as worker:
            await hanging.wait_in_flight(2)
            await asyncio.wait_for(worker.idle.wait(), timeout=15)  # nothing more to claim
            assert await leased(rt, first) + await leased(rt, second) <= 12  # 6 per slow lane
            assert hanging.peak == 2
            hanging.gate.set()
    finally:
        await hanging.stop()


async def test_a_gzip_bomb_is_inflated_only_as_far_as_the_excerpt(tmp_path) -> None:
    """200 MB of zeros in ~200 KB: the sender inflates the excerpt's worth, not the body."""
    import gzip

    from hookline.delivery.sender import Sender
    from tests.conftest import make_settings

    bomb = gzip.compress(b"ok" + b"\0" * (200 * 1024 * 1024), compresslevel=9)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(tmp_path, "sqlite", None, outbound_allowlist=["127.0.0.0/8"])
    try:
        async with Sender(settings) as sender:
            result = await sender.send(f"http://127.0.0.1:{port}/bomb", b"{}", {})
    finally:
        server.close()
    assert result.status == 200
    assert result.excerpt is not None
    assert result.excerpt.startswith("ok") and len(result.excerpt) == 2048


async def test_a_response_full_of_nuls_is_recorded_and_holds_back_no_other_result(
    make_runtime, receiver
) -> None:
    """A gzip bomb inflates to NULs, which PostgreSQL's text refuses: the excerpt keeps them
    as U+FFFD on both backends, so the attempt is recorded, and the results recorded in the
    same batch (another webhook's) are not lost with it."""
    rt = await make_runtime()
    receiver.responder = lambda got: (
        Reply(200, body=b"ok\0\0bad") if got.path.startswith("/nul") else Reply()
    )
    account = await f.make_account(rt)
    nul = await f.make_webhook(rt, account, receiver.url + "/nul")
    healthy = await f.make_webhook(rt, account, receiver.url + "/healthy")
    await f.emit_many(rt, account, 10)  # 10 events, each to both webhooks
    async with running_worker(rt) as worker:
        await worker.wait_recorded(20)
    async with rt.db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    webhook_logs.c.webhook_id,
                    webhook_logs.c.outcome,
                    webhook_logs.c.response_excerpt,
                )
            )
        ).all()
        queued = (await conn.execute(select(func.count()).select_from(delivery_queue))).scalar_one()
    assert sorted((r.webhook_id == nul, r.outcome) for r in rows) == sorted(
        [(True, "delivered")] * 10 + [(False, "delivered")] * 10
    )
    assert {r.response_excerpt for r in rows if r.webhook_id == nul} == {"ok\ufffd\ufffdbad"}
    assert {r.response_excerpt for r in rows if r.webhook_id == healthy} == {"ok"}
    assert queued == 0  # every delivery finished: nothing waits for a lease to run out
