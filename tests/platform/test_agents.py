"""Local agents: agent tokens, heartbeats (``up``), the 15-minute watchdog (``down``, once per
outage, even with racing watchdogs on PostgreSQL), all on a frozen clock."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from hookline.bootstrap import prepare_database
from hookline.clock import FrozenClock
from hookline.platform.agents import mark_down_stale_agents, run_agent_watchdog
from hookline.runtime import Runtime
from hookline.security import fingerprint
from hookline.store.tables import connections
from tests.platform.connections_support import (
    LOCAL_POS,
    ODOO,
    emitted,
    frozen_api,
    new_connection,
    new_consumer,
    strip,
)
from tests.support import ApiClient, Ticks

FIFTEEN_MINUTES = 15 * 60


async def beat(api: ApiClient, token: str) -> dict:
    response = await api.http.post("/agent/heartbeat", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


async def agent_events(rt: Runtime, api: ApiClient) -> list[dict]:
    return [
        strip(b)
        for b in await emitted(rt, account_id=api.account_id)
        if b["event"] in ("account.connection.up", "account.connection.down")
    ]


async def tick(rt: Runtime) -> list:
    async with rt.db.transaction() as conn:
        return await mark_down_stale_agents(
            conn, rt.clock.now(), down_after_seconds=rt.settings.agent_down_after_seconds
        )


async def agent_status(api: ApiClient, consumer_id: str) -> dict | None:
    """``agent`` of the consumer's one connection as GET shows it."""
    response = await api.get(f"/consumers/{consumer_id}/connections")
    assert response.status_code == 200, response.text
    [connection] = response.json()
    return connection["agent"]


async def stored_agent(rt: Runtime, api: ApiClient, consumer_id: str) -> str | None:
    """The same through the use case, for moments when the frozen clock has moved past
    what the access token accepts."""
    from hookline.platform.connections import list_connections

    async with rt.db.read() as conn:
        [connection] = await list_connections(
            conn, uuid.UUID(api.account_id), uuid.UUID(consumer_id)
        )
    return connection.agent


async def test_a_watchdog_pass_scoped_to_an_account_leaves_the_others_alone(database) -> None:
    """What ``hookline demo`` runs, with its seconds-long threshold, on a shared database."""
    async with frozen_api(database) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        created = await new_connection(api, consumer_id, LOCAL_POS)
        await beat(api, created["agent_token"])
        clock.advance(FIFTEEN_MINUTES + 1)
        async with rt.db.transaction() as conn:
            assert (
                await mark_down_stale_agents(
                    conn, rt.clock.now(), down_after_seconds=900, account_id=uuid.uuid4()
                )
                == []
            )
        assert await stored_agent(rt, api, consumer_id) == "up"
        async with rt.db.transaction() as conn:
            [down] = await mark_down_stale_agents(
                conn, rt.clock.now(), down_after_seconds=900, account_id=uuid.UUID(api.account_id)
            )
        assert str(down.connection_id) == created["connectionid"]


async def test_agent_lifecycle_up_down_up_with_the_15_minute_rule(database) -> None:
    async with frozen_api(database) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        created = await new_connection(api, consumer_id, LOCAL_POS)
        token, connection_id = created["agent_token"], created["connectionid"]
        assert token.startswith("hlagent_") and len(token) > 40
        async with rt.db.read() as conn:
            stored = (await conn.execute(select(connections.c.agent_token_hash))).scalar_one()
        assert stored == fingerprint(token)  # only the fingerprint is kept
        assert await agent_status(api, consumer_id) == {"status": "down"}  # never pinged

        def body(event: str) -> dict:
            return {
                "accountid": api.account_id,
                "event": event,
                "consumerid": consumer_id,
                "created": int(clock.now().timestamp()),
                "connectionid": connection_id,
            }

        first = await beat(api, token)
        assert first["came_up"] is True and first["connectionid"] == connection_id
        expected = [body("account.connection.up")]
        assert await agent_events(rt, api) == expected
        assert await agent_status(api, consumer_id) == {"status": "up"}

        clock.advance(600)
        assert (await beat(api, token))["came_up"] is False  # still up: no event
        clock.advance(FIFTEEN_MINUTES - 1)
        assert await tick(rt) == []  # 14:59 of silence is not an outage
        clock.advance(1)
        assert await tick(rt) == []  # exactly 15:00 is not yet "more than"
        clock.advance(1)
        [down] = await tick(rt)
        assert str(down.connection_id) == connection_id
        expected.append(body("account.connection.down"))
        assert await agent_events(rt, api) == expected
        assert await stored_agent(rt, api, consumer_id) == "down"

        clock.advance(3600)
        assert await tick(rt) == []  # one event per outage
        assert await tick(rt) == []
        back = await beat(api, token)
        assert back["came_up"] is True
        expected.append(body("account.connection.up"))
        assert await agent_events(rt, api) == expected
        assert await stored_agent(rt, api, consumer_id) == "up"
        for event in await emitted(rt, account_id=api.account_id):
            assert event["_integration_id"] == LOCAL_POS


async def test_down_after_setting_is_honoured(database) -> None:
    async with frozen_api(database, agent_down_after_seconds=60) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        token = (await new_connection(api, consumer_id, LOCAL_POS))["agent_token"]
        await beat(api, token)
        clock.advance(61)
        assert len(await tick(rt)) == 1


async def test_agent_tokens_authenticate_only_their_connection(database) -> None:
    async with frozen_api(database) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        odoo = await new_connection(api, consumer_id, ODOO)
        assert "agent_token" not in odoo  # not a local-agent integration
        [connection] = [c for c in (await api.get(f"/consumers/{consumer_id}/connections")).json()]
        assert connection["agent"] is None
        local = await new_connection(api, consumer_id, LOCAL_POS)

        for headers in (
            {},
            {"Authorization": "Bearer hlagent_wrong"},
            {"Authorization": api.headers["Authorization"]},  # account JWT
            {"Authorization": "Basic abc"},
        ):
            response = await api.http.post("/agent/heartbeat", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["status"] == "error"
        assert await agent_events(rt, api) == []

        via_header = await api.http.post(
            "/agent/heartbeat", headers={"X-Agent-Token": local["agent_token"]}
        )
        assert via_header.status_code == 200
        assert via_header.json()["connectionid"] == local["connectionid"]

        # Deleting the connection revokes its token.
        url = f"/consumers/{consumer_id}/connections/{local['connectionid']}"
        assert (await api.delete(url)).status_code == 204
        gone = await api.http.post(
            "/agent/heartbeat", headers={"Authorization": f"Bearer {local['agent_token']}"}
        )
        assert gone.status_code == 401
        clock.advance(FIFTEEN_MINUTES + 1)
        assert await tick(rt) == []  # a deleted connection never goes "down"


async def test_never_pinged_agents_are_not_reported_down(database) -> None:
    async with frozen_api(database) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        await new_connection(api, consumer_id, LOCAL_POS)
        clock.advance(10 * FIFTEEN_MINUTES)
        assert await tick(rt) == []
        assert await agent_events(rt, api) == []


async def test_racing_watchdogs_on_postgresql_fire_one_down_per_outage(
    postgres_backend, tmp_path
) -> None:
    from tests.conftest import Backend

    database = Backend(tmp_path, postgres_backend)
    try:
        async with frozen_api(database) as (api, rt, clock):
            consumers = [await new_consumer(api, f"shop {n}") for n in range(5)]
            tokens = [(await new_connection(api, c, LOCAL_POS))["agent_token"] for c in consumers]
            for token in tokens:
                await beat(api, token)
            clock.advance(FIFTEEN_MINUTES + 1)
            others = [Runtime.create(database.settings(), clock=clock) for _ in range(3)]
            try:
                await prepare_database(others[0])
                results = await asyncio.gather(*(tick(other) for other in [rt, *others]))
            finally:
                for other in others:
                    await other.db.dispose()
            won = [down.connection_id for result in results for down in result]
            assert len(won) == 5 and len(set(won)) == 5
            downs = [
                b for b in await agent_events(rt, api) if b["event"] == "account.connection.down"
            ]
            assert len(downs) == 5
            assert {b["consumerid"] for b in downs} == set(consumers)
    finally:
        await database.drop()


async def test_heartbeat_racing_the_watchdog_ends_consistent(postgres_backend, tmp_path) -> None:
    """Whatever order the database picks, a down is always followed by an up."""
    from tests.conftest import Backend

    database = Backend(tmp_path, postgres_backend)
    try:
        async with frozen_api(database) as (api, rt, clock):
            consumer_id = await new_consumer(api)
            token = (await new_connection(api, consumer_id, LOCAL_POS))["agent_token"]
            await beat(api, token)
            clock.advance(FIFTEEN_MINUTES + 1)
            await asyncio.gather(tick(rt), beat(api, token))
            events = [b["event"] for b in await agent_events(rt, api)]
            assert events in (
                ["account.connection.up"],
                ["account.connection.up", "account.connection.down", "account.connection.up"],
            )
            assert await stored_agent(rt, api, consumer_id) == "up"
    finally:
        await database.drop()


async def test_the_watchdog_service_marks_agents_down(database) -> None:
    async with frozen_api(database, scheduler_interval_seconds=0.05) as (api, rt, clock):
        consumer_id = await new_consumer(api)
        created = await new_connection(api, consumer_id, LOCAL_POS)
        await beat(api, created["agent_token"])
        clock.advance(FIFTEEN_MINUTES + 1)
        stop = asyncio.Event()
        ticks = Ticks()
        service = asyncio.create_task(run_agent_watchdog(rt, stop, ticked=ticks))
        try:
            await ticks.next()
            assert [
                e["event"]
                for e in await agent_events(rt, api)
                if e["event"] == "account.connection.down"
            ] == ["account.connection.down"]
        finally:
            stop.set()
            await asyncio.wait_for(service, timeout=5)
        async with rt.db.read() as conn:
            status = (
                await conn.execute(
                    select(connections.c.agent_status).where(
                        connections.c.id == uuid.UUID(created["connectionid"])
                    )
                )
            ).scalar_one()
        assert status == "down"


def test_frozen_clock_is_what_moves_time() -> None:
    clock = FrozenClock()
    start = clock.now()
    clock.advance(FIFTEEN_MINUTES)
    assert (clock.now() - start).total_seconds() == FIFTEEN_MINUTES
