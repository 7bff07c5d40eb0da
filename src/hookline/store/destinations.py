"""Shared scheduling state of the delivery workers: open circuits and live workers.

``delivery_destinations`` holds one row per destination whose circuit is open (or being
probed); no row means closed. Every worker reads it about once a second, so a circuit opened
by one worker holds for all, and exactly one worker wins each probe (a conditional update).

``delivery_workers`` is a heartbeat per live worker (PostgreSQL): a worker silent for longer
than the takeover period is dead, and any worker releases its leased deliveries at once
instead of letting them wait out the lease. A live worker's claims are never touched (its
heartbeat is fresh); one stalled past the takeover period loses them, and its later writes
are refused by the lease guard, as after an expired lease.

All of it is off the hot path: rows change only when a circuit opens or closes, and the reads
are one small query per worker per second.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import delivery_destinations, delivery_queue, delivery_workers

dd = delivery_destinations
dw = delivery_workers
dq = delivery_queue


@dataclass(frozen=True, slots=True)
class CircuitRow:
    destination: str
    failures: int
    opened_at: datetime
    open_until: datetime
    cooldown_seconds: float
    probe_owner: str | None
    probe_until: datetime | None


def _row(row: object) -> CircuitRow:
    return CircuitRow(*row)  # type: ignore[misc]


_COLUMNS = (
    dd.c.destination,
    dd.c.failures,
    dd.c.opened_at,
    dd.c.open_until,
    dd.c.cooldown_seconds,
    dd.c.probe_owner,
    dd.c.probe_until,
)


async def circuits(conn: AsyncConnection) -> list[CircuitRow]:
    """Every destination whose circuit is not closed."""
    return [_row(r) for r in (await conn.execute(select(*_COLUMNS))).all()]


async def circuits_for(conn: AsyncConnection, destinations: Sequence[str]) -> dict[str, CircuitRow]:
    if not destinations:
        return {}
    rows = await conn.execute(select(*_COLUMNS).where(dd.c.destination.in_(set(destinations))))
    return {row.destination: row for row in map(_row, rows.all())}


async def open_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(dd))).scalar_one())


async def open_circuit(
    conn: AsyncConnection, destination: str, *, failures: int, now: datetime, cooldown: float
) -> None:
    """Open a closed circuit; one already open (by another worker) is left as it is."""
    exists = (
        await conn.execute(select(dd.c.destination).where(dd.c.destination == destination))
    ).first()
    if exists is not None:
        return
    await conn.execute(
        insert(dd).values(
            destination=destination,
            failures=failures,
            opened_at=now,
            open_until=now + timedelta(seconds=cooldown),
            cooldown_seconds=cooldown,
            probe_owner=None,
            probe_until=None,
        )
    )


async def take_probe(
    conn: AsyncConnection, destination: str, *, owner: str, now: datetime, until: datetime
) -> bool:
    """Become the one worker allowed to send the probe of a circuit whose cool-down is over."""
    result = await conn.execute(
        update(dd)
        .where(
            dd.c.destination == destination,
            dd.c.open_until <= now,
            or_(dd.c.probe_owner.is_(None), dd.c.probe_until < now),
        )
        .values(probe_owner=owner, probe_until=until)
    )
    return bool(result.rowcount)


async def close_circuit(conn: AsyncConnection, destination: str) -> None:
    await conn.execute(delete(dd).where(dd.c.destination == destination))


async def reopen_circuit(
    conn: AsyncConnection, destination: str, *, owner: str, now: datetime, max_cooldown: float
) -> float | None:
    """A failed probe: open again for twice the last cool-down (at most ``max_cooldown``).
    Returns the new cool-down, or None when the row is gone (closed meanwhile)."""
    row = (
        await conn.execute(select(dd.c.cooldown_seconds).where(dd.c.destination == destination))
    ).first()
    if row is None:
        return None
    last: float = row.cooldown_seconds
    cooldown = min(max_cooldown, last * 2)
    await conn.execute(
        update(dd)
        .where(dd.c.destination == destination)
        .values(
            open_until=now + timedelta(seconds=cooldown),
            cooldown_seconds=cooldown,
            probe_owner=None,
            probe_until=None,
        )
    )
    return cooldown


# -- workers ------------------------------------------------------------------------------


async def heartbeat(conn: AsyncConnection, owner: str, now: datetime) -> None:
    """Register ``owner`` as alive (again, if it was taken for dead after a stall)."""
    result = await conn.execute(update(dw).where(dw.c.owner == owner).values(heartbeat_at=now))
    if not result.rowcount:
        await conn.execute(insert(dw).values(owner=owner, heartbeat_at=now))


async def unregister(conn: AsyncConnection, owner: str) -> None:
    await conn.execute(delete(dw).where(dw.c.owner == owner))


async def take_over_dead(conn: AsyncConnection, *, now: datetime, dead_before: datetime) -> int:
    """Release the leases of workers whose heartbeat stopped; returns how many were released.

    A read first: the common answer is "nobody died", which writes nothing.
    """
    dead = (
        (await conn.execute(select(dw.c.owner).where(dw.c.heartbeat_at < dead_before)))
        .scalars()
        .all()
    )
    if not dead:
        return 0
    released = await conn.execute(
        update(dq).where(dq.c.lease_owner.in_(dead)).values(available_at=now, lease_owner=None)
    )
    await conn.execute(delete(dw).where(dw.c.owner.in_(dead), dw.c.heartbeat_at < dead_before))
    return int(released.rowcount)


async def release_all_leases(conn: AsyncConnection, now: datetime) -> int:
    """SQLite at start-up: only one process uses the file, so every lease found is stale."""
    result = await conn.execute(
        update(dq).where(dq.c.lease_owner.is_not(None)).values(available_at=now, lease_owner=None)
    )
    return int(result.rowcount)


async def give_back(
    conn: AsyncConnection, *, owner: str, delivery_ids: Sequence[uuid.UUID], now: datetime
) -> int:
    """Return claimed deliveries unsent: lease released, the claim's attempt not counted."""
    given = 0
    for start in range(0, len(delivery_ids), 500):
        chunk = list(delivery_ids[start : start + 500])
        result = await conn.execute(
            update(dq)
            .where(dq.c.lease_owner == owner, dq.c.delivery_id.in_(chunk))
            .values(available_at=now, lease_owner=None, attempt=dq.c.attempt - 1)
        )
        given += result.rowcount
    return given
