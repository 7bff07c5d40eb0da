"""Circuit breaking per destination (issue 15.5), on SQLite and PostgreSQL, two workers.

The cool-down is set far longer than the test, and the test ends it by moving the shared
row's ``open_until`` into the past: it stands in for time passing, and every worker reads
the same row.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from hookline.api.app import create_app
from hookline.platform.accounts import create_account
from hookline.store.tables import deliveries, delivery_destinations, delivery_queue
from tests.delivery import factories as f
from tests.delivery.conftest import running_worker
from tests.receiver import Received, Reply
from tests.support import ApiClient

FAILURES = 3


async def circuit_rows(rt):
    async with rt.db.read() as conn:
        return (await conn.execute(select(delivery_destinations))).all()


async def until(check, timeout: float = 20.0) -> None:
    """Poll the shared table (written by the workers' own tasks) with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_circuit_opens_sends_nothing_while_open_and_one_probe_closes_it(
    make_runtime, receiver
) -> None:
    rt = await make_runtime(
        circuit_failures=FAILURES,
        circuit_cooldown_seconds=3600.0,
        retry_schedule=[0.0] * 50,  # failed deliveries are due again at once
        retry_jitter=0.0,
    )
    receiver.default = Reply(503, body=b"down")
    app = create_app(rt, run_background=False)
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "circuit", now=rt.clock.now())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        api = ApiClient(http, key)
        await api.login()
        created = await api.post(
            "/webhooks", json={"event": f.EVENT, "url": receiver.url + "/down"}
        )
        assert created.json()["circuit"]["state"] == "closed"
        hook = created.json()["webhookid"]
        for _ in range(4):
            await f.emit_event(rt, key.account_id)
        async with running_worker(rt) as one, running_worker(rt) as two:

            async def opened() -> bool:
                return len(await circuit_rows(rt)) == 1

            await until(opened)
            (row,) = await circuit_rows(rt)
            assert row.destination == receiver.url and row.failures >= FAILURES
            for worker in (one, two):  # both see it and have nothing left they may claim
                worker.idle.clear()
                await asyncio.wait_for(worker.idle.wait(), timeout=15)
            seen = len(receiver.requests)
            late = await f.emit_event(rt, key.account_id)
            for worker in (one, two):
                worker.idle.clear()
                await asyncio.wait_for(worker.idle.wait(), timeout=15)
            # Open: the new delivery (and every retry) waits; nothing is sent, nothing spent.
            assert not await _arrives(receiver, seen + 1, within=0.5)
            async with rt.db.read() as conn:
                (attempt,) = (
                    await conn.execute(
                        select(delivery_queue.c.attempt).where(
                            delivery_queue.c.delivery_id == late.delivery_ids[0]
                        )
                    )
                ).one()
            assert attempt == 0
            view = (await api.get(f"/webhooks/{hook}")).json()["circuit"]
            assert (view["state"], view["failures"]) == ("open", row.failures)
            metrics = (await http.get("/metrics")).text
            assert "hookline_delivery_open_circuits 1.0" in metrics

            # The cool-down ends: exactly one probe goes out, held until the test has seen
            # that nothing else is sent beside it.
            gate = asyncio.Event()
            probes: list[Received] = []

            def answer(request: Received) -> Reply:
                probes.append(request)
                return Reply(200, delay=0.0 if gate.is_set() else 1.0)

            receiver.responder = answer
            async with rt.db.transaction() as conn:
                await conn.execute(
                    update(delivery_destinations).values(
                        open_until=rt.clock.now() - timedelta(seconds=1)
                    )
                )
            await receiver.wait_for(seen + 1)
            assert not await _arrives(receiver, seen + 2, within=0.5)
            assert len(probes) == 1
            gate.set()

            async def closed() -> bool:
                return not await circuit_rows(rt)

            await until(closed)
            total = 5
            await until(lambda: _all_delivered(rt, total))
        view = (await api.get(f"/webhooks/{hook}")).json()["circuit"]
        assert view["state"] == "closed"
        assert "hookline_delivery_open_circuits 0.0" in (await http.get("/metrics")).text


async def _all_delivered(rt, total: int) -> bool:
    async with rt.db.read() as conn:
        statuses = (await conn.execute(select(deliveries.c.status))).scalars().all()
    return statuses.count("delivered") == total


async def _arrives(receiver, count: int, *, within: float) -> bool:
    try:
        await receiver.wait_for(count, timeout=within)
    except TimeoutError:
        return False
    return True


def test_a_destination_gains_lanes_on_fast_successes_and_loses_them_on_trouble() -> None:
    from hookline.delivery.destinations import (
        Circuit,
        Destination,
        counts_as_failure,
    )

    limits = _small_limits()
    dest = Destination("http://h:1", limits)
    assert (dest.lane_cap, dest.cap) == (2, 12)  # a new destination starts slow
    for _ in range(10):
        assert not dest.record(failed=False, slow=False)
    assert (dest.lane_cap, dest.cap) == (8, 40)  # capped by the limits' max_held
    dest.record(failed=False, slow=True)
    assert dest.lane_cap == 2
    for _ in range(6):
        dest.record(failed=False, slow=False)
    dest.sending[object()] = 0.0  # type: ignore[index]
    assert dest.stuck(now=2.5) and dest.lane_cap == 2  # a request in flight for too long
    assert [dest.record(failed=True, slow=False) for _ in range(3)] == [False, False, True]
    dest.set_circuit(Circuit.OPEN)
    assert (dest.lane_cap, dest.cap, dest.admit()) == (0, 0, False)
    dest.set_circuit(Circuit.PROBING)
    assert (dest.admit(), dest.admit()) == (True, False)  # one probe
    assert counts_as_failure(None, True) and counts_as_failure(503, True)
    assert counts_as_failure(429, True)
    assert not counts_as_failure(404, True) and not counts_as_failure(None, False)


def test_quick_5xx_in_a_row_halve_the_lanes_where_silence_resets_them() -> None:
    """A receiver that answers 5xx/429 quickly keeps its lanes for a lone failure among
    successes (one failing endpoint is not an overloaded host) and loses half of them per
    failure in a row, down to the slow limit; a timeout or a refused connection (no answer)
    and a slow answer take the lanes straight back to the slow limit."""
    from hookline.delivery.destinations import Destination

    limits = _small_limits()
    dest = Destination("http://h:1", limits)
    for _ in range(10):
        dest.record(failed=False, slow=False)
    assert dest.lane_cap == 8
    dest.record(failed=True, slow=False, answered=True)
    assert dest.lane_cap == 8  # a lone 5xx
    dest.record(failed=True, slow=False, answered=True)
    assert (dest.lane_cap, dest.cap) == (4, 24)  # two in a row: halved
    dest.record(failed=True, slow=False, answered=True)
    assert dest.lane_cap == 2  # and again, not below the slow limit
    dest.record(failed=True, slow=False, answered=True)
    assert dest.lane_cap == 2
    for _ in range(10):
        dest.record(failed=False, slow=False)
    assert dest.lane_cap == 8
    dest.record(failed=True, slow=True, answered=True)  # a slow 5xx
    assert dest.lane_cap == 2
    for _ in range(10):
        dest.record(failed=False, slow=False)
    dest.record(failed=True, slow=False, answered=False)  # no answer at all
    assert dest.lane_cap == 2


def test_a_destination_that_turns_slow_holds_only_its_slow_share() -> None:
    """Deliveries claimed while a destination was fast and still waiting for a lane are the
    excess once it turns slow; the ones being sent are not (they cannot be given back)."""
    from hookline.delivery.destinations import Circuit, Destination

    limits = _small_limits()
    dest = Destination("http://h:1", limits)
    for _ in range(10):
        dest.record(failed=False, slow=False)
    assert dest.cap == 40 and dest.excess == 0
    for n in range(40):
        assert dest.admit()
        dest.backlog.append(n)  # type: ignore[arg-type]
    for _ in range(8):  # eight lanes took one each
        dest.backlog.popleft()
    assert dest.excess == 0
    dest.record(failed=True, slow=False)  # back to 2 lanes: a cap of 12
    assert dest.cap == 12 and dest.excess == 28  # 40 held, 12 allowed; 32 wait for a lane
    for _ in range(30):
        dest.backlog.popleft()
    assert dest.excess == 2  # only what still waits can go back
    dest.set_circuit(Circuit.OPEN)
    assert dest.excess == len(dest.backlog) == 2  # an open circuit gives back all that waits


def _small_limits() -> Any:
    from hookline.delivery.destinations import Limits

    return Limits(
        lanes=8,
        slow_lanes=2,
        slow_seconds=2.0,
        max_held=40,
        circuit_failures=3,
        cooldown_seconds=30.0,
        max_cooldown_seconds=900.0,
    )
