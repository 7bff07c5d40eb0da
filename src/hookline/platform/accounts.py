"""Accounts and their API keys (accountId + clientId + clientSecret)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.errors import InvalidRequest
from hookline.ids import new_id
from hookline.security import hash_secret, verify_secret
from hookline.store.tables import accounts, api_keys

_DUMMY_HASH = hash_secret("not-a-real-secret")


@dataclass(frozen=True)
class NewApiKey:
    account_id: uuid.UUID
    client_id: str
    client_secret: str  # shown once, never stored in clear


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    name: str
    created_at: datetime


async def create_account(conn: AsyncConnection, name: str, *, now: datetime) -> NewApiKey:
    name = name.strip()
    if not name:
        raise InvalidRequest("The account name cannot be empty")
    account_id = new_id()
    await conn.execute(insert(accounts).values(id=account_id, name=name, created_at=now))
    return await create_api_key(conn, account_id, now=now)


async def create_api_key(
    conn: AsyncConnection, account_id: uuid.UUID, *, now: datetime, name: str | None = None
) -> NewApiKey:
    client_id = secrets.token_hex(16)
    client_secret = secrets.token_urlsafe(32)
    await conn.execute(
        insert(api_keys).values(
            id=new_id(),
            account_id=account_id,
            client_id=client_id,
            secret_hash=hash_secret(client_secret),
            name=name,
            created_at=now,
        )
    )
    return NewApiKey(account_id, client_id, client_secret)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown of a key: never its secret (only a hash of it is stored)."""

    client_id: str
    name: str | None
    created_at: datetime


async def list_api_keys(conn: AsyncConnection, account_id: uuid.UUID) -> list[ApiKeyInfo]:
    rows = await conn.execute(
        select(api_keys.c.client_id, api_keys.c.name, api_keys.c.created_at)
        .where(api_keys.c.account_id == account_id)
        .order_by(api_keys.c.created_at)
    )
    return [ApiKeyInfo(row.client_id, row.name, row.created_at) for row in rows]


async def revoke_api_key(conn: AsyncConnection, client_id: str) -> uuid.UUID | None:
    """Delete the key: it can no longer get tokens, and dashboard sessions signed in with it
    end at their next page. Returns its account, or ``None`` for an unknown key."""
    row = (
        await conn.execute(
            delete(api_keys)
            .where(api_keys.c.client_id == client_id)
            .returning(api_keys.c.account_id)
        )
    ).first()
    return None if row is None else row.account_id


async def list_accounts(conn: AsyncConnection) -> list[Account]:
    rows = await conn.execute(select(accounts).order_by(accounts.c.created_at))
    return [Account(row.id, row.name, row.created_at) for row in rows]


async def check_api_key(
    conn: AsyncConnection, *, account_id: uuid.UUID, client_id: str, client_secret: str
) -> bool:
    """True when the key exists, belongs to that account and the secret matches."""
    row = (
        await conn.execute(
            select(api_keys.c.account_id, api_keys.c.secret_hash).where(
                api_keys.c.client_id == client_id
            )
        )
    ).first()
    if row is None or row.account_id != account_id:
        # Spend the same time as a real check so response times don't reveal valid ids.
        await asyncio.to_thread(verify_secret, client_secret, _DUMMY_HASH)
        return False
    return await asyncio.to_thread(verify_secret, client_secret, row.secret_hash)


async def account_exists(conn: AsyncConnection, account_id: uuid.UUID) -> bool:
    query = select(accounts.c.id).where(accounts.c.id == account_id)
    return (await conn.execute(query)).first() is not None
