"""Webhook subscriptions: create, list, read, change and delete an account's webhooks.

These use cases are shared by the HTTP API and the dashboard, so every rule lives here:
limits, URL shape, catalog membership, one (url, event) per account, and the POS scope.
``delivery`` must not import ``platform``, so callers resolve ``integrationid`` against the
connector catalog themselves and pass what they found as an :class:`IntegrationRef`.

The signing keys are encrypted with the runtime's secret box before they reach the database
and are never part of a returned value (a generated secret is returned once, by the rotation
that made it); ``has_secret`` tells whether one is set. The encrypted value is a plain secret
or a key set (:mod:`hookline.delivery.signing`): rotation keeps the previous key for an
overlap, and Ed25519 webhooks keep their private key there too.

The previous key of a rotation is forgotten (removed from the stored value) by
:func:`expire_previous_secrets`, which the ``secret-expiry`` service runs every scheduler
interval, and by any change of the webhook after its overlap; signing already stops using it
at the end of the overlap, whatever is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import BY_NAME, schema_for
from hookline.delivery.signing import (
    KEYSET_PREFIX,
    KeySet,
    Scheme,
    new_ed25519_key,
    new_hmac_secret,
    public_key,
)
from hookline.errors import DuplicateKey, InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.periodic import Ticked, every
from hookline.runtime import Runtime
from hookline.security import SecretBox
from hookline.store.ordering import PER_CONSUMER, rekey
from hookline.store.statuses import WebhookStatus
from hookline.store.tables import webhooks

MAX_EVENT = 80
MAX_URL = 500
MAX_SECRET = 100
STATUSES = frozenset(WebhookStatus)
POS_API = "POS"  # the catalog's name for the Point of Sale unified API
DEFAULT_OVERLAP_SECONDS = 86_400
MAX_OVERLAP_SECONDS = 30 * 86_400
MAX_FILTER_FIELDS = 20
MAX_FILTER_VALUES = 100
EXPIRY_BATCH = 500
MIN_RATE_LIMIT = 0.01  # deliveries per second: one every 100 seconds
MAX_RATE_LIMIT = 10_000.0
ORDERINGS = ("none", PER_CONSUMER)

Filter = dict[str, list[Any]]


@dataclass(frozen=True)
class IntegrationRef:
    """What the caller found for an ``integrationid`` in the connector catalog."""

    id: int
    is_pos: bool


@dataclass(frozen=True)
class Webhook:
    id: uuid.UUID
    account_id: uuid.UUID
    event: str
    url: str
    status: str
    integration_id: int | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    has_secret: bool
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    signature_scheme: Scheme = Scheme.HMAC
    public_key: str | None = None  # ``whpk_``: Ed25519 webhooks only
    previous_secret_until: datetime | None = None  # end of a rotation's overlap
    filter: Filter | None = None
    rate_limit_per_second: float | None = None  # None: no limit
    ordering: str = "none"  # none | per_consumer


class _Keep:
    """The value of a PATCH field that was not given (``None`` may mean "remove")."""


KEEP = _Keep()


@dataclass(frozen=True)
class Rotated:
    webhook: Webhook
    generated_secret: str | None  # a generated ``whsec_`` secret, shown once; else None


def webhook_from_row(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        account_id=row.account_id,
        event=row.event,
        url=row.url,
        status=row.status,
        integration_id=row.integration_id,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        has_secret=row.secret_encrypted is not None,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        signature_scheme=Scheme(row.signature_scheme),
        public_key=row.public_key,
        previous_secret_until=row.previous_secret_until,
        filter=row.payload_filter,
        rate_limit_per_second=row.rate_limit_per_second,
        ordering=row.ordering or "none",
    )


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host. Reachability (SSRF) is checked at delivery time."""
    url = url.strip()
    if not url:
        raise InvalidRequest("The url cannot be empty", error_code="ERROR_INVALID_URL")
    if len(url) > MAX_URL:
        raise InvalidRequest(
            f"The url is longer than {MAX_URL} characters", error_code="ERROR_INVALID_URL"
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidRequest(
            "The url cannot contain spaces or control characters", error_code="ERROR_INVALID_URL"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidRequest(f"Invalid url: {url!r}", error_code="ERROR_INVALID_URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(
            "The url must start with http:// or https://", error_code="ERROR_INVALID_URL"
        )
    if not parts.hostname:
        raise InvalidRequest("The url must have a host", error_code="ERROR_INVALID_URL")
    return url


def _check_secret(secret: str) -> None:
    if len(secret) > MAX_SECRET:
        raise InvalidRequest(
            f"The signingsecret is longer than {MAX_SECRET} characters",
            error_code="ERROR_INVALID_SECRET",
        )
    if secret.startswith(KEYSET_PREFIX):  # would read as a key set when signing
        raise InvalidRequest(
            f"The signingsecret cannot start with {KEYSET_PREFIX!r}",
            error_code="ERROR_INVALID_SECRET",
        )


def _check_scheme(scheme: str) -> Scheme:
    try:
        return Scheme(scheme)
    except ValueError:
        raise InvalidRequest(
            f"Unknown signature_scheme {scheme!r}; expected hmac or ed25519",
            error_code="ERROR_INVALID_SIGNATURE_SCHEME",
        ) from None


def _no_secret_for_ed25519() -> InvalidRequest:
    return InvalidRequest(
        "An ed25519 webhook takes no signingsecret: hookline generates its key pair",
        detail="Use POST /webhooks/{id}/rotate-secret to change the key",
        error_code="ERROR_INVALID_SECRET",
    )


def _bad_filter(message: str, detail: str = "") -> InvalidRequest:
    return InvalidRequest(message, detail=detail, error_code="ERROR_INVALID_FILTER")


def validate_filter(event: str, value: Any) -> Filter | None:
    """``value`` as a payload filter of ``event``: body field -> non-empty list of accepted
    scalar values, each field in the event type's schema and each value valid for it.
    ``None`` or ``{}`` mean "no filter" (every event is delivered)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad_filter("The filter must be an object: body field -> list of accepted values")
    if not value:
        return None
    if len(value) > MAX_FILTER_FIELDS:
        raise _bad_filter(f"A filter may name at most {MAX_FILTER_FIELDS} fields")
    properties: dict[str, Any] = schema_for(BY_NAME[event])["properties"]
    result: Filter = {}
    for field, accepted in value.items():
        if field not in properties:
            raise _bad_filter(
                f"Unknown field {field!r} in the filter: {event} has no such body field",
                detail="Known fields: " + ", ".join(properties),
            )
        if not isinstance(accepted, list) or not 0 < len(accepted) <= MAX_FILTER_VALUES:
            raise _bad_filter(
                f"The filter's {field!r} must be a list of 1 to {MAX_FILTER_VALUES} values"
            )
        checker = Draft202012Validator(properties[field], format_checker=FormatChecker())
        for item in accepted:
            if isinstance(item, dict | list | float):
                raise _bad_filter(
                    f"The filter's {field!r} values must be strings, integers, booleans or null"
                )
            problem = next(iter(checker.iter_errors(item)), None)
            if problem is not None:
                raise _bad_filter(
                    f"The filter's {field!r} accepts a value no {event} body can have",
                    detail=f"{item!r}: {problem.message}",
                )
        result[field] = list(dict.fromkeys(accepted))  # duplicates removed, order kept
    return result


def validate_rate_limit(value: Any) -> float | None:
    """Deliveries per second (``None``: no limit): a number from ``MIN_RATE_LIMIT`` to
    ``MAX_RATE_LIMIT``. Enforced across every worker (:mod:`hookline.store.rate_windows`)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_rate_limit(f"rate_limit_per_second must be a number, not {value!r}")
    if not MIN_RATE_LIMIT <= value <= MAX_RATE_LIMIT:  # NaN fails too
        raise _bad_rate_limit(
            f"rate_limit_per_second must be between {MIN_RATE_LIMIT:g} and {MAX_RATE_LIMIT:g} "
            "deliveries per second, or null for no limit",
            detail=str(value),
        )
    return float(value)


def _bad_rate_limit(message: str, detail: str = "") -> InvalidRequest:
    return InvalidRequest(message, detail=detail, error_code="ERROR_INVALID_RATE_LIMIT")


def validate_ordering(value: str) -> str | None:
    """``none`` or ``per_consumer``, as stored (NULL for none)."""
    if value not in ORDERINGS:
        raise InvalidRequest(
            f"Unknown ordering {value!r}; expected none or per_consumer",
            error_code="ERROR_INVALID_ORDERING",
        )
    return None if value == "none" else value


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _from_unix(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _check_event(event: str) -> str:
    if len(event) > MAX_EVENT or event not in BY_NAME:
        raise InvalidRequest(
            f"Unknown event {event!r}",
            detail="See GET /webhooks/list for the known events",
            error_code="ERROR_UNKNOWN_EVENT",
        )
    return BY_NAME[event].api or ""


async def create_webhook(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    event: str,
    url: str,
    now: datetime,
    signing_secret: str | None = None,
    integration_id: int | None = None,
    integration: IntegrationRef | None = None,
    created_by: uuid.UUID | None = None,
    signature_scheme: str = Scheme.HMAC,
    payload_filter: Any = None,
    rate_limit_per_second: Any = None,
    ordering: str = "none",
) -> Webhook:
    """Subscribe ``url`` to ``event``; the webhook starts ``active``.

    ``signature_scheme`` ``ed25519`` makes hookline generate a key pair (no secret may be
    given); ``payload_filter`` restricts the events delivered (:func:`validate_filter`);
    ``rate_limit_per_second`` caps its deliveries (:func:`validate_rate_limit`);
    ``ordering`` ``per_consumer`` sends each consumer's events one at a time, in order.

    ``integration`` is the caller's lookup of ``integration_id`` (None when it does not
    exist). A POS event needs a POS integration: the webhook then receives only events of
    connections on that integration. Other events take no ``integration_id`` (400), because
    it would not filter anything and silently ignoring it would mislead. An empty secret
    means "no secret" (deliveries are then unsigned).
    """
    api = _check_event(event)
    url = validate_url(url)
    if api == POS_API:
        if integration_id is None:
            raise InvalidRequest(
                f"The event {event} needs an integrationid of a Point of Sale integration",
                error_code="ERROR_INTEGRATION_REQUIRED",
            )
        if integration is None or integration.id != integration_id:
            raise InvalidRequest(
                f"Unknown integrationid {integration_id}", error_code="ERROR_UNKNOWN_INTEGRATION"
            )
        if not integration.is_pos:
            raise InvalidRequest(
                f"The integration {integration_id} is not a Point of Sale integration",
                detail=f"{event} events come only from Point of Sale integrations",
                error_code="ERROR_INVALID_INTEGRATION",
            )
    elif integration_id is not None:
        raise InvalidRequest(
            f"integrationid applies only to events of a unified API; {event} has none",
            error_code="ERROR_INVALID_INTEGRATION",
        )
    scheme = _check_scheme(signature_scheme)
    checked_filter = validate_filter(event, payload_filter)
    rate_limit = validate_rate_limit(rate_limit_per_second)
    stored_ordering = validate_ordering(ordering)
    keys: dict[str, Any] = {"public_key": None}
    if scheme is Scheme.ED25519:
        if signing_secret:
            raise _no_secret_for_ed25519()
        private = new_ed25519_key()
        keys["public_key"] = public_key(private)
        keys["secret_encrypted"] = box.encrypt(KeySet(scheme, private).encode())
    else:
        if signing_secret is not None:
            _check_secret(signing_secret)
        keys["secret_encrypted"] = box.encrypt(signing_secret) if signing_secret else None
    await _refuse_duplicate(conn, account_id, url, event, exclude=None)
    values = {
        "id": new_id(),
        "account_id": account_id,
        "event": event,
        "url": url,
        **keys,
        "signature_scheme": scheme.value,
        "payload_filter": checked_filter,
        "rate_limit_per_second": rate_limit,
        "ordering": stored_ordering,
        "integration_id": integration_id,
        "status": WebhookStatus.ACTIVE,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }
    await _write(conn, insert(webhooks).values(values), url, event)
    return await get_webhook(conn, account_id=account_id, webhook_id=values["id"])


async def list_webhooks(
    conn: AsyncConnection, *, account_id: uuid.UUID, status: str | None = None
) -> list[Webhook]:
    """The account's webhooks, oldest first; ``status`` keeps only active or inactive ones."""
    query = select(webhooks).where(webhooks.c.account_id == account_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidRequest(f"Unknown status {status!r}; expected active or inactive")
        query = query.where(webhooks.c.status == status)
    rows = await conn.execute(query.order_by(webhooks.c.created_at, webhooks.c.id))
    return [webhook_from_row(row) for row in rows]


async def get_webhook(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> Webhook:
    """One webhook of the account; another account's id is answered as unknown (404)."""
    row = (
        await conn.execute(
            select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Webhook {webhook_id} not found", error_code="ERROR_WEBHOOK_NOT_FOUND")
    return webhook_from_row(row)


async def update_webhook(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    now: datetime,
    status: str | None = None,
    url: str | None = None,
    signing_secret: str | None = None,
    payload_filter: Any = None,
    rate_limit_per_second: Any = KEEP,
    ordering: str | None = None,
) -> Webhook:
    """Change status, url, signing secret, filter, rate limit and/or ordering; ``None``
    leaves a field as it is, except ``rate_limit_per_second``, where ``None`` removes the
    limit (and :data:`KEEP`, the default, leaves it).

    An empty ``signing_secret`` removes the secret (HMAC webhooks; it replaces the secret at
    once, ending any rotation overlap: rotate-secret is the graceful way). An empty
    ``payload_filter`` (``{}``) removes the filter. Re-activating clears the automatic disabling
    state (reason and failing-since), so the failure clock starts again. Event and
    integration cannot change: delete and re-create the webhook instead.
    """
    current = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    values: dict[str, Any] = {}
    if status is not None and status != current.status:
        if status not in STATUSES:
            raise InvalidRequest(f"Unknown status {status!r}; expected active or inactive")
        values["status"] = status
        if status == WebhookStatus.ACTIVE:
            values.update(disabled_reason=None, failing_since=None)
    if url is not None:
        url = validate_url(url)
        if url != current.url:
            await _refuse_duplicate(conn, account_id, url, current.event, exclude=webhook_id)
            values["url"] = url
    if signing_secret is not None:
        if current.signature_scheme is Scheme.ED25519:
            raise _no_secret_for_ed25519()
        _check_secret(signing_secret)
        values["secret_encrypted"] = box.encrypt(signing_secret) if signing_secret else None
        values["previous_secret_until"] = None
    if payload_filter is not None:
        new_filter = validate_filter(current.event, payload_filter)
        if new_filter != current.filter:
            values["payload_filter"] = new_filter
    if not isinstance(rate_limit_per_second, _Keep):
        rate_limit = validate_rate_limit(rate_limit_per_second)
        if rate_limit != current.rate_limit_per_second:
            values["rate_limit_per_second"] = rate_limit
    if ordering is not None:
        stored_ordering = validate_ordering(ordering)
        if (stored_ordering or "none") != current.ordering:
            values["ordering"] = stored_ordering
            # What is already queued follows the new setting too.
            await rekey(conn, webhook_id, ordered=stored_ordering is not None)
    if not values:
        return current
    if "secret_encrypted" not in values and _overlap_over(current, now):
        values.update(await _forgotten_previous(conn, box, webhook_id, now))
    values["updated_at"] = now
    statement = update(webhooks).where(webhooks.c.id == webhook_id).values(values)
    await _write(conn, statement, values.get("url", current.url), current.event)
    return await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)


async def delete_webhook(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    """Delete a webhook with its deliveries, queue rows and logs (foreign-key cascade)."""
    result = await conn.execute(
        delete(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
    )
    if result.rowcount == 0:
        raise NotFound(f"Webhook {webhook_id} not found", error_code="ERROR_WEBHOOK_NOT_FOUND")


async def _refuse_duplicate(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    url: str,
    event: str,
    *,
    exclude: uuid.UUID | None,
) -> None:
    query = select(webhooks.c.id).where(
        webhooks.c.account_id == account_id, webhooks.c.url == url, webhooks.c.event == event
    )
    if exclude is not None:
        query = query.where(webhooks.c.id != exclude)
    if (await conn.execute(query)).first() is not None:
        raise _duplicate(url, event)


async def _write(conn: AsyncConnection, statement: Any, url: str, event: str) -> None:
    """Run an insert/update; a concurrent duplicate that slipped past the check is a 400."""
    try:
        async with conn.begin_nested():
            await conn.execute(statement)
    except DuplicateKey:
        raise _duplicate(url, event) from None


def _duplicate(url: str, event: str) -> InvalidRequest:
    return InvalidRequest(
        f"A webhook for {event} to this url already exists",
        detail=url,
        error_code="ERROR_WEBHOOK_DUPLICATE",
    )


def _overlap_over(webhook: Webhook, now: datetime) -> bool:
    until = webhook.previous_secret_until
    return until is not None and _unix(until) <= _unix(now)


async def _read_keys(conn: AsyncConnection, box: SecretBox, webhook_id: uuid.UUID) -> KeySet | None:
    value = (
        await conn.execute(select(webhooks.c.secret_encrypted).where(webhooks.c.id == webhook_id))
    ).scalar_one_or_none()
    return KeySet.decode(box.decrypt(value)) if value else None


async def _forgotten_previous(
    conn: AsyncConnection, box: SecretBox, webhook_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """The column values that drop a previous key whose overlap has ended."""
    keys = await _read_keys(conn, box, webhook_id)
    if keys is None:
        return {"previous_secret_until": None}
    kept = keys.expired(_unix(now))
    return {
        "secret_encrypted": box.encrypt(kept.encode()),
        "previous_secret_until": _from_unix(kept.previous_until),
    }


async def rotate_secret(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    now: datetime,
    signing_secret: str | None = None,
    overlap_seconds: int = DEFAULT_OVERLAP_SECONDS,
) -> Rotated:
    """Give the webhook a new key; the current one keeps signing for ``overlap_seconds``.

    HMAC: ``signing_secret`` or, when omitted, a generated ``whsec_`` secret (returned once).
    Ed25519: a new key pair (no secret may be given; the new public key is on the webhook).
    A previous key still in its overlap is dropped: only the last two keys ever sign. A
    webhook without a secret simply gets one (nothing to overlap with).
    """
    current = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise InvalidRequest(
            f"overlap_seconds must be between 0 and {MAX_OVERLAP_SECONDS}",
            error_code="ERROR_INVALID_OVERLAP",
        )
    generated: str | None = None
    values: dict[str, Any] = {}
    if current.signature_scheme is Scheme.ED25519:
        if signing_secret:
            raise _no_secret_for_ed25519()
        new = new_ed25519_key()
        values["public_key"] = public_key(new)
    elif signing_secret:
        _check_secret(signing_secret)
        new = signing_secret
    else:
        new = generated = new_hmac_secret()
    keys = await _read_keys(conn, box, webhook_id)
    seconds = _unix(now)
    if keys is None:
        rotated = KeySet(current.signature_scheme, new)
    else:
        rotated = keys.expired(seconds).rotated(new, now=seconds, overlap_seconds=overlap_seconds)
    values.update(
        secret_encrypted=box.encrypt(rotated.encode()),
        previous_secret_until=_from_unix(rotated.previous_until),
        updated_at=now,
    )
    await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(values))
    webhook = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    return Rotated(webhook, generated)


async def expire_previous_secrets(conn: AsyncConnection, box: SecretBox, now: datetime) -> int:
    """Forget the previous keys whose overlap has ended (a batch); returns how many."""
    rows = (
        await conn.execute(
            select(webhooks.c.id).where(webhooks.c.previous_secret_until <= now).limit(EXPIRY_BATCH)
        )
    ).all()
    for (webhook_id,) in rows:
        values = await _forgotten_previous(conn, box, webhook_id, now)
        await conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(values))
    return len(rows)


async def run_secret_expiry(
    runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None
) -> None:
    """The background service that forgets ended rotation overlaps' previous keys."""

    async def tick() -> None:
        while True:
            async with runtime.db.transaction() as conn:
                done = await expire_previous_secrets(conn, runtime.secret_box, runtime.clock.now())
            if done < EXPIRY_BATCH:
                return

    await every(
        max(runtime.settings.scheduler_interval_seconds, 1.0),
        stop,
        tick,
        what="rotation overlap expiry",
        ticked=ticked,
    )


async def read_signing_secret(
    conn: AsyncConnection, box: SecretBox, *, webhook_id: uuid.UUID
) -> str | None:
    """The clear signing secret, for signing deliveries only; never put it in a response."""
    value = (
        await conn.execute(select(webhooks.c.secret_encrypted).where(webhooks.c.id == webhook_id))
    ).scalar_one_or_none()
    return box.decrypt(value) if value else None
