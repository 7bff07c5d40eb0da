"""Consumers: an account's end customers, the owners of connections, syncs and issues.

This module is the use cases on a consumer; deleting one spans its flows and connections,
so it sits above :mod:`~hookline.platform.connections` and :mod:`~hookline.platform.syncs`,
which themselves only read the consumer's row (:mod:`hookline.platform.consumer_records`).

Every function is scoped to one account: another account's consumer is reported as missing
(:class:`NotFound`), never as forbidden, so ids cannot be probed across accounts.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.platform.connections import delete_connections_of_consumer
from hookline.platform.consumer_records import (
    EMAIL_MAX,
    NAME_MAX,
    REDIRECT_MAX,
    REFERENCE_MAX,
    Consumer,
    create_consumer,
    find_consumer,
    get_consumer,
    list_consumers,
    update_consumer,
)
from hookline.platform.syncs import consumer_removed
from hookline.store.tables import consumers


async def delete_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID, *, now: datetime
) -> None:
    """Delete the consumer; its flows are disabled and each of its connections deleted first,
    so that every one of them fires its ``disabled`` / ``deleted`` event in this same
    transaction."""
    consumer = await get_consumer(conn, account_id, consumer_id)
    await consumer_removed(conn, account_id, consumer.id, now=now)
    await delete_connections_of_consumer(conn, account_id, consumer.id, now=now)
    await conn.execute(delete(consumers).where(consumers.c.id == consumer.id))


__all__ = [
    "EMAIL_MAX",
    "NAME_MAX",
    "REDIRECT_MAX",
    "REFERENCE_MAX",
    "Consumer",
    "create_consumer",
    "delete_consumer",
    "find_consumer",
    "get_consumer",
    "list_consumers",
    "update_consumer",
]
