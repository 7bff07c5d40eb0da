"""Connections: a consumer's link to one integration, and the events of its life.

Each state transition lives in exactly one function here, so rules that hang off it (issues
raised or closed on a status change, ...) are added in one place:

- :func:`create_connection`  -> ``account.connection.created``
- :func:`update_connection`  -> ``account.connection.updated`` (name or credentials changed)
- :func:`set_connection_status` -> ``account.connection.updated`` (active <-> inactive)
- :func:`delete_connection`  -> ``account.connection.deleted``

Credentials are encrypted at rest with the runtime's secret box and never returned.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import HooklineError, InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.platform import issues
from hookline.platform.consumer_records import get_consumer
from hookline.platform.integrations import Integration, find_integration
from hookline.platform.statuses import AgentStatus, ConnectionStatus, IntegrationStatus
from hookline.security import SecretBox, fingerprint, new_token
from hookline.store.tables import activation_links, connections, consumers, integrations

NAME_MAX = 80
STATUSES = tuple(ConnectionStatus)
AGENT_TOKEN_PREFIX = "hlagent_"


class LinkGone(HooklineError):
    """An activation link that exists but can no longer be used (expired or already used)."""

    status_code = 410
    error_code = ErrorCode.LINK_GONE


@dataclass(frozen=True)
class Connection:
    id: uuid.UUID
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    integration_id: int
    integration_name: str
    api: str
    local_agent: bool
    name: str
    status: ConnectionStatus
    agent_status: AgentStatus | None  # None until the local agent's first heartbeat
    agent_last_seen: datetime | None
    status_error_code: str | None
    status_message: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def agent(self) -> AgentStatus | None:
        """``up``/``down`` for local-agent connections (never pinged counts as down)."""
        if not self.local_agent:
            return None
        return self.agent_status or AgentStatus.DOWN


@dataclass(frozen=True)
class NewConnection:
    connection: Connection
    agent_token: str | None  # local-agent connections only; shown once, stored hashed


@dataclass(frozen=True)
class Change:
    connection: Connection
    changed: bool


@dataclass(frozen=True)
class ActivationLink:
    id: uuid.UUID
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    integration_id: int | None
    connection_id: uuid.UUID | None
    name: str | None
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class NewLink:
    token: str  # the capability in the URL; only its fingerprint is stored
    link: ActivationLink


# --- reading -------------------------------------------------------------------------------


def _select() -> Any:
    return select(
        connections,
        integrations.c.name.label("integration_name"),
        integrations.c.api,
        integrations.c.local_agent,
    ).join(integrations, integrations.c.id == connections.c.integration_id)


def _from_row(row: Any) -> Connection:
    return Connection(
        id=row.id,
        account_id=row.account_id,
        consumer_id=row.consumer_id,
        integration_id=row.integration_id,
        integration_name=row.integration_name,
        api=row.api,
        local_agent=bool(row.local_agent),
        name=row.name,
        status=ConnectionStatus(row.status),
        agent_status=AgentStatus(row.agent_status) if row.agent_status else None,
        agent_last_seen=row.agent_last_seen,
        status_error_code=row.status_error_code,
        status_message=row.status_message,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def list_connections(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> list[Connection]:
    await get_consumer(conn, account_id, consumer_id)
    query = _select().where(
        connections.c.account_id == account_id, connections.c.consumer_id == consumer_id
    )
    rows = await conn.execute(query.order_by(connections.c.created_at, connections.c.id))
    return [_from_row(row) for row in rows]


async def find_connection(
    conn: AsyncConnection, account_id: uuid.UUID, connection_id: uuid.UUID
) -> Connection | None:
    """A connection of the account by id alone (for callers that don't know the consumer)."""
    row = (
        await conn.execute(
            _select().where(
                connections.c.account_id == account_id, connections.c.id == connection_id
            )
        )
    ).first()
    return _from_row(row) if row else None


async def get_connection(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID, connection_id: uuid.UUID
) -> Connection:
    await get_consumer(conn, account_id, consumer_id)
    found = await find_connection(conn, account_id, connection_id)
    if found is None or found.consumer_id != consumer_id:
        raise NotFound(
            f"Connection {connection_id} not found", error_code=ErrorCode.CONNECTION_NOT_FOUND
        )
    return found


def read_credentials(box: SecretBox, connection_row_value: str | None) -> dict[str, str]:
    """Decrypt stored credentials (for connectors running inside hookline)."""
    if not connection_row_value:
        return {}
    credentials: dict[str, str] = json.loads(box.decrypt(connection_row_value))
    return credentials


async def get_credentials(
    conn: AsyncConnection, box: SecretBox, account_id: uuid.UUID, connection_id: uuid.UUID
) -> dict[str, str]:
    value = (
        await conn.execute(
            select(connections.c.credentials_encrypted).where(
                connections.c.account_id == account_id, connections.c.id == connection_id
            )
        )
    ).scalar()
    return read_credentials(box, value)


# --- validation ----------------------------------------------------------------------------


def credentials_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The contract's ``[{key, value}]`` list as a dict; a key given twice is a mistake."""
    result: dict[str, str] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidRequest(f"Credential {key!r} is given twice")
        result[key] = value
    return result


def check_credentials(
    integration: Integration, credentials: Mapping[str, str], *, visible_to: str | None = None
) -> dict[str, str]:
    """Keep declared fields only, require the non-optional ones, drop empty optional ones.

    ``visible_to="consumer"`` checks a form the consumer filled in: fields reserved to the
    connector are neither shown nor required there.
    """
    declared = {item.name: item for item in integration.credentials}
    unknown = sorted(set(credentials) - set(declared))
    if unknown:
        raise InvalidRequest(
            f"Unknown credential(s) for {integration.name}: {', '.join(unknown)}",
            detail=f"expected: {', '.join(declared) or 'none'}",
            error_code=ErrorCode.INVALID_CREDENTIALS,
        )
    cleaned: dict[str, str] = {}
    missing: list[str] = []
    for name, item in declared.items():
        value = credentials.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(
                f"Credential {name!r} must be a string", error_code=ErrorCode.INVALID_CREDENTIALS
            )
        if value is not None and value.strip():
            cleaned[name] = value.strip()
            continue
        concerned = visible_to is None or item.visibility in (visible_to, "both")
        if not item.optional and concerned:
            missing.append(name)
    if missing:
        raise InvalidRequest(
            f"Missing credential(s) for {integration.name}: {', '.join(missing)}",
            error_code=ErrorCode.INVALID_CREDENTIALS,
        )
    return cleaned


def _check_name(name: str | None, integration: Integration) -> str:
    cleaned = (name or "").strip() or integration.name
    if len(cleaned) > NAME_MAX:
        raise InvalidRequest(f"The connection name is longer than {NAME_MAX} characters")
    return cleaned


async def usable_integration(conn: AsyncConnection, integration_id: int) -> Integration:
    integration = await find_integration(conn, integration_id)
    if integration is None:
        raise InvalidRequest(
            f"Integration {integration_id} does not exist", error_code=ErrorCode.INVALID_INTEGRATION
        )
    if integration.status != IntegrationStatus.ACTIVE:
        raise InvalidRequest(
            f"Integration {integration_id} is not active", error_code=ErrorCode.INVALID_INTEGRATION
        )
    return integration


async def _lock_consumer(conn: AsyncConnection, consumer_id: uuid.UUID) -> None:
    """Serialise connection changes of one consumer, so the one-active-connection rule holds
    under concurrent requests (PostgreSQL row lock; SQLite writers are serial already)."""
    await conn.execute(
        select(consumers.c.id).where(consumers.c.id == consumer_id).with_for_update()
    )


async def _ensure_no_other_active(
    conn: AsyncConnection,
    consumer_id: uuid.UUID,
    integration: Integration,
    *,
    except_id: uuid.UUID | None = None,
) -> None:
    query = select(connections.c.id).where(
        connections.c.consumer_id == consumer_id,
        connections.c.integration_id == integration.id,
        connections.c.status == ConnectionStatus.ACTIVE,
    )
    if except_id is not None:
        query = query.where(connections.c.id != except_id)
    if (await conn.execute(query.limit(1))).first() is not None:
        raise InvalidRequest(
            f"The consumer already has an active connection to {integration.name}",
            error_code=ErrorCode.CONNECTION_ALREADY_EXISTS,
        )


# --- transitions ---------------------------------------------------------------------------


async def _emit(
    conn: AsyncConnection, connection: Connection, event: str, now: datetime, **fields: Any
) -> None:
    await emit_draft(
        conn,
        EventDraft(
            account_id=connection.account_id,
            event=event,
            consumer_id=connection.consumer_id,
            fields={"connectionid": connection.id, **fields},
            now=now,
            integration_id=connection.integration_id,
        ),
    )


async def create_connection(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    integration_id: int,
    name: str | None,
    credentials: Mapping[str, str],
    now: datetime,
    visible_to: str | None = None,
) -> NewConnection:
    """Create an active connection and fire ``account.connection.created``."""
    await get_consumer(conn, account_id, consumer_id)
    integration = await usable_integration(conn, integration_id)
    cleaned_name = _check_name(name, integration)
    cleaned = check_credentials(integration, credentials, visible_to=visible_to)
    await _lock_consumer(conn, consumer_id)
    await _ensure_no_other_active(conn, consumer_id, integration)
    agent_token = AGENT_TOKEN_PREFIX + new_token(32) if integration.local_agent else None
    connection_id = new_id()
    await conn.execute(
        insert(connections).values(
            id=connection_id,
            account_id=account_id,
            consumer_id=consumer_id,
            integration_id=integration.id,
            name=cleaned_name,
            status=ConnectionStatus.ACTIVE,
            credentials_encrypted=box.encrypt(json.dumps(cleaned)),
            agent_token_hash=fingerprint(agent_token) if agent_token else None,
            agent_status=None,
            agent_last_seen=None,
            created_at=now,
            updated_at=now,
        )
    )
    connection = await get_connection(conn, account_id, consumer_id, connection_id)
    await _emit(conn, connection, "account.connection.created", now, status=connection.status)
    return NewConnection(connection, agent_token)


async def update_connection(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    now: datetime,
    name: str | None = None,
    credentials: Mapping[str, str] | None = None,
    visible_to: str | None = None,
) -> Change:
    """Rename and/or change credentials; ``account.connection.updated`` only if something
    really changed. Given credentials are merged into the stored ones (an empty value
    removes an optional field); the result must satisfy the integration's fields."""
    current = await get_connection(conn, account_id, consumer_id, connection_id)
    integration = await find_integration(conn, current.integration_id)
    assert integration is not None  # foreign key
    values: dict[str, Any] = {}
    if name is not None:
        new_name = _check_name(name, integration)
        if new_name != current.name:
            values["name"] = new_name
    if credentials is not None:
        stored = await get_credentials(conn, box, account_id, connection_id)
        merged = {**stored, **credentials}
        merged = {key: value for key, value in merged.items() if value is not None}
        cleaned = check_credentials(integration, merged, visible_to=visible_to)
        if cleaned != stored:
            values["credentials_encrypted"] = box.encrypt(json.dumps(cleaned))
    if not values:
        return Change(current, False)
    await conn.execute(
        update(connections).where(connections.c.id == current.id).values(**values, updated_at=now)
    )
    connection = await get_connection(conn, account_id, consumer_id, connection_id)
    await _emit(conn, connection, "account.connection.updated", now, status=connection.status)
    return Change(connection, True)


async def set_connection_status(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    status: str,
    now: datetime,
    consumer_id: uuid.UUID | None = None,
    error_code: str | None = None,
    message: str | None = None,
) -> Change:
    """The connection's credentials stopped working (``inactive``) or work again
    (``active``). Fires ``account.connection.updated`` only on a real change; the reported
    error code and message are kept for display either way (cleared when active)."""
    if status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
    status = ConnectionStatus(status)
    current = await find_connection(conn, account_id, connection_id)
    if current is None or (consumer_id is not None and current.consumer_id != consumer_id):
        raise NotFound(
            f"Connection {connection_id} not found", error_code=ErrorCode.CONNECTION_NOT_FOUND
        )
    detail = (
        {"status_error_code": error_code, "status_message": message}
        if status == ConnectionStatus.INACTIVE
        else {"status_error_code": None, "status_message": None}
    )
    if status == current.status:
        if (current.status_error_code, current.status_message) != tuple(detail.values()):
            await conn.execute(
                update(connections).where(connections.c.id == current.id).values(**detail)
            )
        return Change(await _reload(conn, current), False)
    if status == ConnectionStatus.ACTIVE:
        integration = await find_integration(conn, current.integration_id)
        assert integration is not None
        await _lock_consumer(conn, current.consumer_id)
        await _ensure_no_other_active(conn, current.consumer_id, integration, except_id=current.id)
    # Conditional on the old status: of two concurrent reports, only one is a change.
    result = await conn.execute(
        update(connections)
        .where(connections.c.id == current.id, connections.c.status == current.status)
        .values(status=status, updated_at=now, **detail)
    )
    if result.rowcount != 1:
        return Change(await _reload(conn, current), False)
    connection = await _reload(conn, current)
    await _emit(conn, connection, "account.connection.updated", now, status=status)
    await issues.connection_status_changed(
        conn,
        account_id=connection.account_id,
        consumer_id=connection.consumer_id,
        connection_id=connection.id,
        status=status,
        now=now,
        message=message,
    )
    return Change(connection, True)


async def _reload(conn: AsyncConnection, connection: Connection) -> Connection:
    found = await find_connection(conn, connection.account_id, connection.id)
    assert found is not None
    return found


async def delete_connection(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    now: datetime,
) -> None:
    """Delete the connection (its agent token dies with it): ``account.connection.deleted``."""
    current = await get_connection(conn, account_id, consumer_id, connection_id)
    result = await conn.execute(delete(connections).where(connections.c.id == current.id))
    if result.rowcount == 1:  # a concurrent delete already fired the event
        await _emit(conn, current, "account.connection.deleted", now)


async def delete_connections_of_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID, *, now: datetime
) -> int:
    """Used when the consumer itself is deleted: one ``deleted`` event per connection."""
    doomed = await list_connections(conn, account_id, consumer_id)
    for connection in doomed:
        await delete_connection(
            conn,
            account_id=account_id,
            consumer_id=consumer_id,
            connection_id=connection.id,
            now=now,
        )
    return len(doomed)


# --- activation links ----------------------------------------------------------------------


def _link_from_row(row: Any) -> ActivationLink:
    return ActivationLink(
        row.id,
        row.account_id,
        row.consumer_id,
        row.integration_id,
        row.connection_id,
        row.name,
        row.expires_at,
        row.used_at,
    )


async def create_activation_link(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    now: datetime,
    ttl_seconds: float,
    integration_id: int | None = None,
    name: str | None = None,
    connection_id: uuid.UUID | None = None,
) -> NewLink:
    """A single-use link to the activation page. Nothing else is created (and no event
    fires) until the page's form is submitted with valid credentials."""
    await get_consumer(conn, account_id, consumer_id)
    if connection_id is not None:
        existing = await get_connection(conn, account_id, consumer_id, connection_id)
        integration_id = existing.integration_id
    elif integration_id is not None:
        integration = await usable_integration(conn, integration_id)
        _check_name(name, integration)
    if name is not None and len(name) > NAME_MAX:
        raise InvalidRequest(f"The connection name is longer than {NAME_MAX} characters")
    token = new_token(32)
    link = ActivationLink(
        new_id(),
        account_id,
        consumer_id,
        integration_id,
        connection_id,
        (name or "").strip() or None,
        now + timedelta(seconds=ttl_seconds),
        None,
    )
    await conn.execute(
        insert(activation_links).values(
            id=link.id,
            account_id=account_id,
            consumer_id=consumer_id,
            integration_id=integration_id,
            connection_id=connection_id,
            name=link.name,
            token_hash=fingerprint(token),
            expires_at=link.expires_at,
            used_at=None,
            created_at=now,
        )
    )
    return NewLink(token, link)


async def open_activation_link(
    conn: AsyncConnection, token: str, *, now: datetime
) -> ActivationLink:
    """The link behind ``token`` if it can still be used; NotFound or LinkGone otherwise."""
    row = (
        await conn.execute(
            select(activation_links).where(activation_links.c.token_hash == fingerprint(token))
        )
    ).first()
    if row is None:
        raise NotFound("This activation link does not exist.", error_code=ErrorCode.LINK_NOT_FOUND)
    link = _link_from_row(row)
    if link.used_at is not None:
        raise LinkGone(
            "This activation link has already been used.", error_code=ErrorCode.LINK_USED
        )
    if link.expires_at <= now:
        raise LinkGone("This activation link has expired.", error_code=ErrorCode.LINK_EXPIRED)
    return link


async def complete_activation(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    token: str,
    now: datetime,
    integration_id: int | None,
    name: str | None,
    credentials: Mapping[str, str],
) -> NewConnection:
    """Submit the activation form: claim the link (single use) and create or update the
    connection, all in the caller's transaction. If the credentials are refused the
    transaction rolls back, so the link stays usable for a corrected attempt."""
    link = await open_activation_link(conn, token, now=now)
    claimed = await conn.execute(
        update(activation_links)
        .where(
            activation_links.c.id == link.id,
            activation_links.c.used_at.is_(None),
            activation_links.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise LinkGone(
            "This activation link has already been used.", error_code=ErrorCode.LINK_USED
        )
    if link.connection_id is not None:
        change = await update_connection(
            conn,
            box,
            account_id=link.account_id,
            consumer_id=link.consumer_id,
            connection_id=link.connection_id,
            now=now,
            name=name,
            credentials=credentials,
            visible_to="consumer",
        )
        return NewConnection(change.connection, None)
    if link.integration_id is not None and integration_id not in (None, link.integration_id):
        raise InvalidRequest("This link is for another integration.")
    chosen = link.integration_id if link.integration_id is not None else integration_id
    if chosen is None:
        raise InvalidRequest("Choose the software to connect.")
    return await create_connection(
        conn,
        box,
        account_id=link.account_id,
        consumer_id=link.consumer_id,
        integration_id=chosen,
        name=name or link.name,
        credentials=credentials,
        now=now,
        visible_to="consumer",
    )
