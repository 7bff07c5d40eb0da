"""Syncs, their flows, and which consumers joined a sync and enabled which flow.

A sync belongs to an account; its flows carry triggers (event, or timer with cron schedules)
and an execution definition that names the runner. Enabling and disabling a flow for one
consumer emits ``account.flow.enabled`` / ``account.flow.disabled`` only on a real change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.platform import cron
from hookline.platform.consumer_records import get_consumer
from hookline.platform.executions import finish_execution, flow_row, running_children
from hookline.platform.runners.registry import RunnerRegistry
from hookline.platform.runners.types import SECRET_KEY
from hookline.platform.statuses import ExecutionStatus, SyncStatus
from hookline.security import SecretBox
from hookline.store.tables import executions, flow_consumers, flows, sync_consumers, syncs

DEFAULT_TRIGGER_ID = "trigger-1"
#: The stored cron column's width: all of a flow's schedules, joined, must fit.
CRON_MAX: int = cast(String, flows.c.cron.type).length or 0


@dataclass(frozen=True)
class Flow:
    id: uuid.UUID
    sync_id: uuid.UUID
    name: str
    execution: dict[str, Any]
    config: dict[str, Any] | None
    triggers: list[dict[str, Any]]
    next_run_at: datetime | None = None

    def trigger(self, trigger_id: str | None) -> dict[str, Any] | None:
        return next((item for item in self.triggers if item.get("id") == trigger_id), None)


@dataclass(frozen=True)
class Sync:
    id: uuid.UUID
    name: str
    definition: dict[str, Any]
    consumers: list[uuid.UUID] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)


@dataclass(frozen=True)
class ConsumerFlow:
    flow: Flow
    enabled: bool
    config: dict[str, Any]
    enabled_at: datetime | None


@dataclass(frozen=True)
class ConsumerSync:
    sync: Sync
    consumer_id: uuid.UUID
    status: str
    data: dict[str, Any]
    created_at: datetime
    flows: list[ConsumerFlow]


# --- lookups -----------------------------------------------------------------------------


def parse_id(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """A path id; a malformed one is simply not found (the contract types these as strings)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


async def require_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> None:
    """404 unless the consumer exists in this account."""
    await get_consumer(conn, account_id, consumer_id)


def _flow_from_row(row: Any) -> Flow:
    return Flow(
        id=row.id,
        sync_id=row.sync_id,
        name=row.name,
        execution=row.execution,
        config=row.config,
        triggers=row.triggers,
        next_run_at=row.next_run_at,
    )


async def _sync_row(conn: AsyncConnection, account_id: uuid.UUID, sync_id: uuid.UUID) -> Any:
    row = (
        await conn.execute(
            select(syncs).where(syncs.c.id == sync_id, syncs.c.account_id == account_id)
        )
    ).first()
    if row is None:
        raise NotFound("Sync not found", error_code=ErrorCode.SYNC_NOT_FOUND)
    return row


async def get_flow(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    key_share: bool = False,
) -> Flow:
    """The flow (404 if it is not this account's); ``key_share`` as in :func:`flow_row`."""
    return _flow_from_row(await flow_row(conn, account_id, sync_id, flow_id, key_share=key_share))


async def _load_syncs(conn: AsyncConnection, rows: list[Any]) -> list[Sync]:
    if not rows:
        return []
    ids = [row.id for row in rows]
    flow_rows = (
        await conn.execute(
            select(flows).where(flows.c.sync_id.in_(ids)).order_by(flows.c.created_at, flows.c.id)
        )
    ).all()
    member_rows = (
        await conn.execute(
            select(sync_consumers.c.sync_id, sync_consumers.c.consumer_id)
            .where(sync_consumers.c.sync_id.in_(ids))
            .order_by(sync_consumers.c.created_at, sync_consumers.c.consumer_id)
        )
    ).all()
    result = []
    for row in rows:
        result.append(
            Sync(
                id=row.id,
                name=row.name,
                definition=row.definition,
                consumers=[m.consumer_id for m in member_rows if m.sync_id == row.id],
                flows=[_flow_from_row(f) for f in flow_rows if f.sync_id == row.id],
            )
        )
    return result


async def list_syncs(conn: AsyncConnection, account_id: uuid.UUID) -> list[Sync]:
    rows = (
        await conn.execute(
            select(syncs)
            .where(syncs.c.account_id == account_id)
            .order_by(syncs.c.created_at, syncs.c.id)
        )
    ).all()
    return await _load_syncs(conn, list(rows))


async def get_sync(conn: AsyncConnection, account_id: uuid.UUID, sync_id: uuid.UUID) -> Sync:
    return (await _load_syncs(conn, [await _sync_row(conn, account_id, sync_id)]))[0]


# --- syncs and flows ---------------------------------------------------------------------


async def create_sync(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    name: str,
    definition: dict[str, Any],
    flow_items: list[dict[str, Any]],
    now: datetime,
    box: SecretBox | None = None,
    runners: RunnerRegistry | None = None,
) -> Sync:
    """A sync with its flows; ``definition`` keeps config, connections and mappings as given.
    ``runners``: as for :func:`upsert_flow`."""
    sync_id = new_id()
    await conn.execute(
        insert(syncs).values(
            id=sync_id, account_id=account_id, name=name, definition=definition, created_at=now
        )
    )
    names = [item["name"] for item in flow_items]
    if len(set(names)) != len(names):
        raise InvalidRequest(
            "Flow names must be unique within a sync", error_code=ErrorCode.DUPLICATE_FLOW
        )
    for item in flow_items:
        await upsert_flow(conn, account_id, sync_id, item, now=now, box=box, runners=runners)
    return await get_sync(conn, account_id, sync_id)


def _schedules(triggers: list[dict[str, Any]]) -> list[str]:
    """All cron schedules of the timer triggers; a timer trigger without one is an error."""
    schedules: list[str] = []
    ids = [item["id"] for item in triggers]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(
            "Trigger ids must be unique within a flow", error_code=ErrorCode.INVALID_TRIGGER
        )
    for item in triggers:
        if item["type"] == "timer":
            given = item.get("cronschedules") or []
            if not given:
                raise InvalidRequest(
                    f"Timer trigger {item['id']!r} needs cronschedules",
                    error_code=ErrorCode.INVALID_CRON,
                )
            schedules.extend(cron.validate_schedules(given))
    joined = cron.join(sorted(set(schedules), key=schedules.index))
    if joined and len(joined) > CRON_MAX:
        raise InvalidRequest("Too many cron schedules", error_code=ErrorCode.INVALID_CRON)
    return cron.split(joined)


def consumer_schedule(triggers: list[dict[str, Any]], config: dict[str, Any]) -> str | None:
    """The schedule a consumer's flow runs on: none unless the consumer's trigger is a timer;
    then the consumer's own ``cronschedule``, else the trigger's first one."""
    trigger_id = config.get("triggerid")
    trigger = next((item for item in triggers if item.get("id") == trigger_id), None)
    if trigger is None or trigger.get("type") != "timer":
        return None
    return config.get("cronschedule") or next(iter(trigger.get("cronschedules") or []), None)


async def timer_consumers(
    conn: AsyncConnection, flow_id: uuid.UUID, triggers: list[dict[str, Any]]
) -> dict[uuid.UUID, str]:
    """Each consumer with the flow enabled on a timer trigger, and its schedule."""
    rows = (
        await conn.execute(
            select(flow_consumers.c.consumer_id, flow_consumers.c.config)
            .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.enabled.is_(True))
            .order_by(flow_consumers.c.consumer_id)
        )
    ).all()
    scheduled = {row.consumer_id: consumer_schedule(triggers, row.config) for row in rows}
    return {consumer: schedule for consumer, schedule in scheduled.items() if schedule}


def wake_schedules(own: list[str], consumers: dict[uuid.UUID, str]) -> list[str]:
    """What the scheduler wakes a flow for: its triggers' schedules (``own``) and every
    schedule its timer consumers run on (from :func:`timer_consumers`)."""
    return list(dict.fromkeys([*own, *consumers.values()]))


async def _schedule_consumer(
    conn: AsyncConnection, flow: Flow, config: dict[str, Any], now: datetime
) -> None:
    """After a consumer's flow settings change: if it now runs on a timer, bring the flow's
    next wake-up forward to its next time (never later: a due time not yet run must not be
    skipped)."""
    schedule = consumer_schedule(flow.triggers, config)
    candidate = cron.next_due([schedule], now) if schedule is not None else None
    if candidate is None:
        return
    await conn.execute(
        update(flows)
        .where(
            flows.c.id == flow.id,
            or_(flows.c.next_run_at.is_(None), flows.c.next_run_at > candidate),
        )
        .values(next_run_at=candidate)
    )


async def upsert_flow(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    item: dict[str, Any],
    *,
    now: datetime,
    box: SecretBox | None = None,
    runners: RunnerRegistry | None = None,
) -> Flow:
    """Create a flow, or update the flow of that name in the sync (keeping its id).

    The execution definition must suit a runner of ``runners`` (the caller's runtime's
    registry, ``runners_of(runtime)``; without it, the built-in runners).

    ``execution.signingsecret`` is stored encrypted (``box``) and never read back; a repost
    without it keeps the stored one, an empty string removes it.

    The next timer run is recomputed only when the schedules change, so re-posting an
    unchanged flow never skips or repeats a due run.
    """
    await _sync_row(conn, account_id, sync_id)
    execution = dict(item["execution"])
    secret = execution.pop("signingsecret", None)
    (RunnerRegistry() if runners is None else runners).validate(execution)
    triggers = item["triggers"]
    schedules = _schedules(triggers)
    spec = cron.join(schedules)
    existing = (
        await conn.execute(
            select(flows.c.id, flows.c.cron, flows.c.execution)
            .where(flows.c.sync_id == sync_id, flows.c.name == item["name"])
            .with_for_update()
        )
    ).first()
    if secret:
        if box is None:
            raise RuntimeError("a SecretBox is needed to store a flow's signing secret")
        execution[SECRET_KEY] = box.encrypt(secret)
    elif secret is None and existing is not None and SECRET_KEY in existing.execution:
        execution[SECRET_KEY] = existing.execution[SECRET_KEY]  # kept; "" removes it
    values = {
        "execution": execution,
        "config": item.get("config"),
        "triggers": triggers,
        "cron": spec,
        "updated_at": now,
    }
    if existing is None:
        flow_id = new_id()
        await conn.execute(
            insert(flows).values(
                id=flow_id,
                account_id=account_id,
                sync_id=sync_id,
                name=item["name"],
                next_run_at=cron.next_due(schedules, now),
                created_at=now,
                **values,
            )
        )
    else:
        flow_id = existing.id
        if existing.cron != spec:
            consumers = await timer_consumers(conn, flow_id, triggers)
            values["next_run_at"] = cron.next_due(wake_schedules(schedules, consumers), now)
        await conn.execute(update(flows).where(flows.c.id == flow_id).values(**values))
    return await get_flow(conn, account_id, sync_id, flow_id)


async def delete_flow(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    now: datetime,
) -> None:
    """Remove a flow with its consumer settings and executions.

    What a consumer could observe is closed first: its running execution ends as error
    (``account.flow.executed``) and its enabled flow is disabled (``account.flow.disabled``),
    so subscribers never keep state about a flow that no longer exists.
    """
    await get_flow(conn, account_id, sync_id, flow_id)
    await conn.execute(select(flows.c.id).where(flows.c.id == flow_id).with_for_update())
    for execution_id in await running_children(conn, flow_id):
        await finish_execution(
            conn,
            execution_id,
            status=ExecutionStatus.ERROR,
            now=now,
            message="The flow was deleted",
            error_code=ErrorCode.FLOW_DELETED,
        )
    enabled = (
        (
            await conn.execute(
                select(flow_consumers.c.consumer_id)
                .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.enabled.is_(True))
                .order_by(flow_consumers.c.consumer_id)
            )
        )
        .scalars()
        .all()
    )
    for consumer_id in enabled:
        await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event="account.flow.disabled",
                consumer_id=consumer_id,
                fields={"flowid": flow_id, "syncid": sync_id},
                now=now,
            ),
        )
    await conn.execute(delete(flows).where(flows.c.id == flow_id))
    for consumer_id in enabled:
        await _set_status(conn, sync_id, consumer_id)


# --- consumers in syncs ------------------------------------------------------------------


async def join_sync(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    data: dict[str, Any],
    *,
    now: datetime,
) -> None:
    """The consumer joins the sync (again: its link data is replaced, its join date kept)."""
    await require_consumer(conn, account_id, consumer_id)
    await _sync_row(conn, account_id, sync_id)
    current = await _membership(conn, sync_id, consumer_id)
    if current is None:
        await conn.execute(
            insert(sync_consumers).values(
                sync_id=sync_id,
                consumer_id=consumer_id,
                status=SyncStatus.INACTIVE,
                data=data,
                created_at=now,
            )
        )
    else:
        merged = {**current.data, **data}
        await conn.execute(
            update(sync_consumers)
            .where(sync_consumers.c.sync_id == sync_id, sync_consumers.c.consumer_id == consumer_id)
            .values(data=merged)
        )


async def _membership(conn: AsyncConnection, sync_id: uuid.UUID, consumer_id: uuid.UUID) -> Any:
    return (
        await conn.execute(
            select(sync_consumers).where(
                sync_consumers.c.sync_id == sync_id, sync_consumers.c.consumer_id == consumer_id
            )
        )
    ).first()


async def get_consumer_sync(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID, sync_id: uuid.UUID
) -> ConsumerSync:
    await require_consumer(conn, account_id, consumer_id)
    sync = await get_sync(conn, account_id, sync_id)
    member = await _membership(conn, sync_id, consumer_id)
    if member is None:
        raise NotFound(
            "The consumer has not joined this sync", error_code=ErrorCode.SYNC_CONSUMER_NOT_FOUND
        )
    rows = (
        await conn.execute(
            select(flow_consumers).where(
                flow_consumers.c.consumer_id == consumer_id,
                flow_consumers.c.flow_id.in_(
                    [flow.id for flow in sync.flows] or [uuid.UUID(int=0)]
                ),
            )
        )
    ).all()
    by_flow = {row.flow_id: row for row in rows}
    items = [
        ConsumerFlow(
            flow=flow,
            enabled=bool(by_flow[flow.id].enabled),
            config=by_flow[flow.id].config,
            enabled_at=by_flow[flow.id].enabled_at,
        )
        for flow in sync.flows
        if flow.id in by_flow
    ]
    return ConsumerSync(
        sync=sync,
        consumer_id=consumer_id,
        status=member.status,
        data=member.data,
        created_at=member.created_at,
        flows=items,
    )


async def update_consumer_mappings(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    mappings: list[dict[str, Any]],
) -> None:
    await require_consumer(conn, account_id, consumer_id)
    await _sync_row(conn, account_id, sync_id)
    member = await _membership(conn, sync_id, consumer_id)
    if member is None:
        raise NotFound(
            "The consumer has not joined this sync", error_code=ErrorCode.SYNC_CONSUMER_NOT_FOUND
        )
    await conn.execute(
        update(sync_consumers)
        .where(sync_consumers.c.sync_id == sync_id, sync_consumers.c.consumer_id == consumer_id)
        .values(data={**member.data, "link_mappings": mappings})
    )


def _resolve_trigger(flow: Flow, trigger_id: str | None, explicit: bool) -> dict[str, Any]:
    """The consumer's trigger: the one asked for, or the flow's first when left at default."""
    found = flow.trigger(trigger_id)
    if found is not None:
        return found
    if explicit and flow.triggers:
        raise InvalidRequest(
            f"Flow has no trigger {trigger_id!r}", error_code=ErrorCode.INVALID_TRIGGER
        )
    if flow.triggers:
        return flow.triggers[0]
    return {"id": trigger_id or DEFAULT_TRIGGER_ID, "type": "event"}


async def _set_status(conn: AsyncConnection, sync_id: uuid.UUID, consumer_id: uuid.UUID) -> None:
    """A consumer is active in a sync while at least one of its flows is enabled."""
    enabled = (
        await conn.execute(
            select(func.count())
            .select_from(flow_consumers.join(flows))
            .where(
                flows.c.sync_id == sync_id,
                flow_consumers.c.consumer_id == consumer_id,
                flow_consumers.c.enabled.is_(True),
            )
        )
    ).scalar_one()
    await conn.execute(
        update(sync_consumers)
        .where(sync_consumers.c.sync_id == sync_id, sync_consumers.c.consumer_id == consumer_id)
        .values(status=SyncStatus.ACTIVE if enabled else SyncStatus.INACTIVE)
    )


async def enable_flow(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    trigger_id: str | None,
    trigger_explicit: bool,
    cronschedule: str | None,
    data: dict[str, Any] | None,
    integrationids: list[str],
    now: datetime,
) -> ConsumerFlow:
    """Enable (or re-configure) a flow for one consumer; emits only on disabled → enabled.

    The consumer joins the sync implicitly if it had not yet.
    """
    await require_consumer(conn, account_id, consumer_id)
    flow = await get_flow(conn, account_id, sync_id, flow_id, key_share=True)
    trigger = _resolve_trigger(flow, trigger_id, trigger_explicit)
    if cronschedule is not None:
        cronschedule = cron.validate_schedules([cronschedule])[0]
    config = {
        "triggerid": trigger["id"],
        "cronschedule": cronschedule,
        "data": data or {},
        "integrationids": integrationids,
    }
    if await _membership(conn, sync_id, consumer_id) is None:
        await join_sync(conn, account_id, consumer_id, sync_id, {}, now=now)
    current = (
        await conn.execute(
            select(flow_consumers)
            .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.consumer_id == consumer_id)
            .with_for_update()
        )
    ).first()
    was_enabled = current is not None and bool(current.enabled)
    enabled_at = current.enabled_at if current is not None and was_enabled else now
    if current is None:
        await conn.execute(
            insert(flow_consumers).values(
                flow_id=flow_id,
                consumer_id=consumer_id,
                enabled=True,
                config=config,
                enabled_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        await conn.execute(
            update(flow_consumers)
            .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.consumer_id == consumer_id)
            .values(enabled=True, config=config, enabled_at=enabled_at, updated_at=now)
        )
    await _schedule_consumer(conn, flow, config, now)
    if not was_enabled:
        await _set_status(conn, sync_id, consumer_id)
        await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event="account.flow.enabled",
                consumer_id=consumer_id,
                fields={"flowid": flow_id, "syncid": sync_id},
                now=now,
            ),
        )
    return ConsumerFlow(flow=flow, enabled=True, config=config, enabled_at=enabled_at)


async def consumer_removed(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID, *, now: datetime
) -> None:
    """Close what subscribers know about a consumer that is being deleted: its running
    executions end as error (``account.flow.executed``) and each flow it had enabled is
    disabled (``account.flow.disabled``), as when a flow itself is deleted."""
    running = (
        (
            await conn.execute(
                select(executions.c.id)
                .where(
                    executions.c.consumer_id == consumer_id,
                    executions.c.status == ExecutionStatus.RUNNING,
                )
                .order_by(executions.c.id)
            )
        )
        .scalars()
        .all()
    )
    for execution_id in running:
        await finish_execution(
            conn,
            execution_id,
            status=ExecutionStatus.ERROR,
            now=now,
            message="The consumer was deleted",
            error_code=ErrorCode.CONSUMER_DELETED,
        )
    enabled = (
        await conn.execute(
            select(flow_consumers.c.flow_id, flows.c.sync_id)
            .join(flows, flows.c.id == flow_consumers.c.flow_id)
            .where(
                flow_consumers.c.consumer_id == consumer_id,
                flow_consumers.c.enabled.is_(True),
                flows.c.account_id == account_id,
            )
            .order_by(flows.c.sync_id, flow_consumers.c.flow_id)
        )
    ).all()
    for row in enabled:
        await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event="account.flow.disabled",
                consumer_id=consumer_id,
                fields={"flowid": row.flow_id, "syncid": row.sync_id},
                now=now,
            ),
        )


async def disable_flow(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    now: datetime,
) -> bool:
    """Disable a flow for one consumer; emits (and returns True) only if it was enabled."""
    await require_consumer(conn, account_id, consumer_id)
    await get_flow(conn, account_id, sync_id, flow_id)
    result = await conn.execute(
        update(flow_consumers)
        .where(
            and_(
                flow_consumers.c.flow_id == flow_id,
                flow_consumers.c.consumer_id == consumer_id,
                flow_consumers.c.enabled.is_(True),
            )
        )
        .values(enabled=False, enabled_at=None, updated_at=now)
    )
    if result.rowcount != 1:
        return False
    await _set_status(conn, sync_id, consumer_id)
    await emit_draft(
        conn,
        EventDraft(
            account_id=account_id,
            event="account.flow.disabled",
            consumer_id=consumer_id,
            fields={"flowid": flow_id, "syncid": sync_id},
            now=now,
        ),
    )
    return True


async def update_flow_consumer(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    trigger_id: str | None,
    trigger_explicit: bool,
    data: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Change a consumer's trigger choice and values for a flow it has set up (no event)."""
    await require_consumer(conn, account_id, consumer_id)
    flow = await get_flow(conn, account_id, sync_id, flow_id)
    current = (
        await conn.execute(
            select(flow_consumers).where(
                flow_consumers.c.flow_id == flow_id, flow_consumers.c.consumer_id == consumer_id
            )
        )
    ).first()
    if current is None:
        raise NotFound(
            "The flow was never enabled for this consumer",
            error_code=ErrorCode.FLOW_CONSUMER_NOT_FOUND,
        )
    trigger = _resolve_trigger(flow, trigger_id, trigger_explicit)
    config = {**current.config, "triggerid": trigger["id"], "data": data or {}}
    await conn.execute(
        update(flow_consumers)
        .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.consumer_id == consumer_id)
        .values(config=config, updated_at=now)
    )
    if current.enabled:
        await _schedule_consumer(conn, flow, config, now)
