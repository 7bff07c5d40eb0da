"""Ordered delivery per consumer (issue 15.6): one delivery at a time per consumer, in event
order; a retrying delivery holds the later ones of its consumer, and nobody else's."""

from __future__ import annotations

import collections
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.ids import new_id
from hookline.store.event_sink import EventRow, sink_of
from tests.delivery import factories as f
from tests.delivery.test_processes import start_worker, stop_process, wait_until_settled
from tests.delivery_api.conftest_helpers import app_client
from tests.delivery_api.control_helpers import worker_of
from tests.delivery_api.helpers import (
    CONSUMER,
    connection_event,
    create_webhook,
    runtime_of,
)
from tests.receiver import Received, Reply
from tests.support import ApiClient

OTHER = "6f1b8d3e-2c4a-7b10-9e3f-0a1b2c3d4e60"


async def test_ordering_is_saved_returned_and_changed(api: ApiClient) -> None:
    created = await create_webhook(api, ordering="per_consumer")
    assert created["ordering"] == "per_consumer"
    path = f"/webhooks/{created['webhookid']}"
    assert (await api.get(path)).json()["ordering"] == "per_consumer"
    assert (await api.patch(path, json={"status": "inactive"})).json()["ordering"] == (
        "per_consumer"
    )
    assert (await api.patch(path, json={"ordering": "none"})).json()["ordering"] == "none"
    plain = await create_webhook(api, url="https://example.com/plain")
    assert plain["ordering"] == "none"
    for bad in ("per_event", "", None, 1):
        response = await api.post(
            "/webhooks",
            json={"event": "account.flow.executed", "url": "https://e.com", "ordering": bad},
        )
        assert response.status_code == 422, response.text
        assert [item["loc"] for item in response.json()["detail"]] == [["body", "ordering"]]
    assert (await api.patch(path, json={"ordering": "sometimes"})).status_code == 422


async def _keys(runtime: Any) -> dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID | None]:
    """(webhook, event) -> ordering key of its queue row."""
    from hookline.store.tables import delivery_queue as dq

    async with runtime.db.read() as conn:
        rows = await conn.execute(select(dq.c.webhook_id, dq.c.event_id, dq.c.ordering_key))
        return {(row[0], row[1]): row[2] for row in rows}


async def test_fan_out_keys_an_ordered_webhooks_rows_by_consumer_on_every_path(
    api: ApiClient,
) -> None:
    runtime = runtime_of(api)
    ordered = uuid.UUID((await create_webhook(api, ordering="per_consumer"))["webhookid"])
    plain = uuid.UUID((await create_webhook(api, url="https://example.com/plain"))["webhookid"])
    single = await api.post("/events", json=connection_event())
    assert single.status_code == 202, single.text
    batch = await api.post(
        "/events/batch",
        json={"events": [connection_event(), connection_event(consumerid=OTHER)]},
    )
    assert batch.status_code == 202, batch.text
    events = [uuid.UUID(single.json()["eventid"])] + [
        uuid.UUID(item["eventid"]) for item in batch.json()["items"]
    ]
    async with runtime.db.transaction() as conn:  # an event without consumer (store path)
        loose = new_id()
        await sink_of(conn).emit(
            conn,
            EventRow(
                event_id=loose,
                account_id=uuid.UUID(api.account_id),
                event="account.connection.created",
                consumer_id=None,
                integration_id=None,
                payload=b'{"event": "account.connection.created"}',
                idempotency_key=None,
                now=runtime.clock.now(),
                pos=False,
            ),
        )
    keys = await _keys(runtime)
    consumer, other = uuid.UUID(CONSUMER), uuid.UUID(OTHER)
    assert [keys[(ordered, e)] for e in events] == [consumer, consumer, other]
    assert keys[(ordered, loose)] is None
    assert {keys[(plain, e)] for e in [*events, loose]} == {None}

    # A change of the setting applies to what is queued too.
    path = f"/webhooks/{ordered}"
    assert (await api.patch(path, json={"ordering": "none"})).status_code == 200
    assert {key for (hook, _), key in (await _keys(runtime)).items() if hook == ordered} == {None}
    assert (await api.patch(path, json={"ordering": "per_consumer"})).status_code == 200
    keys = await _keys(runtime)
    assert [keys[(ordered, e)] for e in events] == [consumer, consumer, other]
    assert (await api.patch(f"/webhooks/{plain}", json={"ordering": "per_consumer"})).json()[
        "ordering"
    ] == "per_consumer"
    assert (await _keys(runtime))[(plain, events[2])] == other


def _connection(request: Received) -> str:
    return json.loads(request.body)["connectionid"]


async def test_a_retrying_delivery_holds_the_later_ones_of_its_consumer_only(
    database: Any, receiver: Any
) -> None:
    """The head fails twice, then succeeds: the later events of its consumer arrive after
    it, in order; another consumer's event, and an event without consumer, are not held
    (the head is refused until both arrived)."""
    async with app_client(database, retry_schedule=[0] + [0.2] * 9) as api:
        runtime = runtime_of(api)
        hook = await create_webhook(api, url=f"{receiver.url}/ordered", ordering="per_consumer")
        posted = []
        for consumer in (CONSUMER, CONSUMER, CONSUMER, OTHER):
            body = connection_event(consumerid=consumer, connectionid=str(new_id()))
            assert (await api.post("/events", json=body)).status_code == 202
            posted.append(body["connectionid"])
        head, second, third, others = posted
        loose = str(new_id())
        async with runtime.db.transaction() as conn:
            await sink_of(conn).emit(
                conn,
                EventRow(
                    event_id=new_id(),
                    account_id=uuid.UUID(api.account_id),
                    event="account.connection.created",
                    consumer_id=None,
                    integration_id=None,
                    payload=json.dumps({"connectionid": loose}).encode(),
                    idempotency_key=None,
                    now=runtime.clock.now(),
                    pos=False,
                ),
            )
        seen: list[str] = []

        def respond(request: Received) -> Reply:
            connection = _connection(request)
            seen.append(connection)
            if connection == head and (
                seen.count(head) <= 2 or others not in seen or loose not in seen
            ):
                return Reply(503)
            return Reply(200, delay=0.05)

        receiver.responder = respond
        async with worker_of(runtime) as worker:
            while third not in [_connection(r) for r in await receiver.wait_for(7, timeout=30)]:
                await receiver.wait_for(len(receiver.requests) + 1, timeout=30)
            await worker.wait_recorded(len(receiver.requests))
        order = [_connection(r) for r in receiver.requests]
        mine = [c for c in order if c in (head, second, third)]
        tries = mine.count(head)
        assert tries >= 3 and mine == [head] * tries + [second, third], order
        assert order.count(others) == 1 and order.count(loose) == 1
        # One at a time: each of the consumer's requests arrived after the previous one was
        # answered (a success is answered 0.05 s after it arrived).
        times = [r.at for r in receiver.requests if _connection(r) in (head, second, third)]
        for earlier, later in zip(times[tries - 1 :], times[tries:], strict=False):
            assert later >= earlier + 0.05
        logs = (await api.get(f"/webhooks/{hook['webhookid']}/logs", params={"limit": 50})).json()
        assert collections.Counter(log["outcome"] for log in logs) == {
            "retry": tries - 1,
            "delivered": 5,
        }


async def test_a_redelivered_delivery_is_queued_with_its_ordering_key(
    database: Any, receiver: Any
) -> None:
    async with app_client(database) as api:
        runtime = runtime_of(api)
        hook = await create_webhook(api, url=f"{receiver.url}/again", ordering="per_consumer")
        assert (await api.post("/events", json=connection_event())).status_code == 202
        async with worker_of(runtime) as worker:
            await receiver.wait_for(1)
            await worker.wait_recorded(1)
        path = f"/webhooks/{hook['webhookid']}"
        (log,) = (await api.get(f"{path}/logs")).json()
        assert (await api.post(f"{path}/logs/{log['webhooklogid']}/redeliver")).status_code == 202
        keys = await _keys(runtime)
        assert list(keys.values()) == [uuid.UUID(CONSUMER)]


async def test_two_postgres_worker_processes_keep_each_consumers_order(
    postgres_backend: str, tmp_path: Path, receiver: Any
) -> None:
    from hookline.bootstrap import prepare_database
    from hookline.runtime import Runtime
    from hookline.store.tables import webhooks
    from tests.conftest import Backend

    consumers, per_consumer = 4, 15
    database = Backend(tmp_path, "postgresql")
    rt = Runtime.create(database.settings())
    await prepare_database(rt)
    workers = []
    attempts: collections.Counter[str] = collections.Counter()
    reply_delay = 0.01

    def respond(request: Received) -> Reply:
        connection = _connection(request)
        attempts[connection] += 1
        # Every third event of a stream fails once: its retry holds the ones after it.
        if order_of[connection] % 3 == 0 and attempts[connection] == 1:
            return Reply(503, delay=reply_delay)
        return Reply(200, delay=reply_delay)

    try:
        account = await f.make_account(rt)
        hook = await f.make_webhook(rt, account, receiver.url + "/ordered")
        async with rt.db.transaction() as conn:
            await conn.execute(
                update(webhooks).where(webhooks.c.id == hook).values(ordering="per_consumer")
            )
        streams = [new_id() for _ in range(consumers)]
        order_of: dict[str, int] = {}
        stream_of: dict[str, uuid.UUID] = {}
        async with rt.db.transaction() as conn:
            for n in range(per_consumer):
                for consumer in streams:  # interleaved, as events of many consumers arrive
                    connection = str(new_id())
                    order_of[connection], stream_of[connection] = n, consumer
                    await emit_draft(
                        conn,
                        EventDraft(
                            account_id=account,
                            event=f.EVENT,
                            consumer_id=consumer,
                            fields={"connectionid": connection},
                            now=rt.clock.now(),
                        ),
                    )
        receiver.responder = respond
        total = consumers * per_consumer
        retries = sum(1 for n in order_of.values() if n % 3 == 0)
        env = database.env(HOOKLINE_DELIVERY_BATCH_SIZE="10", HOOKLINE_DELIVERY_CONCURRENCY="20")
        workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
        await receiver.wait_for(total + retries, timeout=60)
        await wait_until_settled(rt, total)
        by_stream: dict[uuid.UUID, list[Received]] = collections.defaultdict(list)
        for request in receiver.requests:
            by_stream[stream_of[_connection(request)]].append(request)
        for requests in by_stream.values():
            numbers = [order_of[_connection(r)] for r in requests]
            expected = []
            for n in range(per_consumer):
                expected += [n, n] if n % 3 == 0 else [n]
            assert numbers == expected  # in event order, a retry before the next one
            for earlier, later in itertools.pairwise(requests):
                assert later.at >= earlier.at + reply_delay  # never two in flight
    finally:
        for process in workers:
            stop_process(process)
        await rt.db.dispose()
        await database.drop()
