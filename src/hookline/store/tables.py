"""Every table of hookline, in one metadata: the single source of truth for migrations.

Sections follow the layers: accounts (auth), the delivery engine (which knows accounts only
by id and consumers only as an opaque id), and the platform domain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from hookline.store.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


# jsonb on PostgreSQL (fan-out reads it with jsonb operators); Python None is SQL NULL.
_JSON_DOC = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _created() -> Column[datetime]:
    return Column("created_at", UTCDateTime(), nullable=False)


# --- accounts and auth -------------------------------------------------------------------

accounts = Table(
    "accounts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    _created(),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_hash", String(200), nullable=False),
    Column("name", String(200), nullable=True),
    _created(),
)

# Dashboard sessions signed out before their expiry (sessions themselves live in the cookie).
ui_revoked_sessions = Table(
    "ui_revoked_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_ui_revoked_sessions_expires_at", "expires_at"),
)

# --- delivery engine ---------------------------------------------------------------------

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(80), nullable=False),
    Column("url", String(500), nullable=False),
    Column("secret_encrypted", Text, nullable=True),
    Column("integration_id", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_by", Uuid, nullable=True),
    Column("disabled_reason", String(200), nullable=True),
    Column("failing_since", UTCDateTime(), nullable=True),
    # Signing: ``secret_encrypted`` holds the keys (see delivery/signing.py); these copy what
    # a reader needs without decrypting: the scheme, the Ed25519 public key (``whpk_``) and
    # the end of a rotation's overlap (NULL when none).
    Column("signature_scheme", String(16), nullable=False, server_default=text("'hmac'")),
    Column("public_key", String(100), nullable=True),
    Column("previous_secret_until", UTCDateTime(), nullable=True),
    # Body field -> accepted values, checked at fan-out (store/outbox.py); NULL = every event.
    Column("payload_filter", _JSON_DOC, nullable=True),
    # Deliveries per second to this webhook across every worker (NULL: no limit), enforced
    # through ``webhook_rate_windows`` (store/rate_windows.py).
    Column("rate_limit_per_second", Float, nullable=True),
    # NULL: no ordering; ``per_consumer``: one delivery at a time per event consumer, in event
    # order (store/ordering.py).
    Column("ordering", String(16), nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("account_id", "url", "event"),
    Index("ix_webhooks_fanout", "account_id", "event", "status"),
)

events = Table(
    "events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(80), nullable=False),
    Column("consumer_id", Uuid, nullable=True),
    Column("integration_id", Integer, nullable=True),
    Column("payload", LargeBinary, nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    # W3C trace context of the write's span, when tracing is on (hookline.tracing).
    Column("traceparent", String(55), nullable=True),
    _created(),
    UniqueConstraint("account_id", "idempotency_key"),
    Index("ix_events_account_created", "account_id", "created_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),  # also the Standard Webhooks ``webhook-id``
    Column("event_id", Uuid, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_http_status", Integer, nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_deliveries_webhook_status", "webhook_id", "status", "updated_at"),
    Index("ix_deliveries_event", "event_id"),
)

# The hot queue: only deliveries that still have to be sent. Rows leave on success or final
# failure, so the table stays small and its one index stays in memory. On PostgreSQL it (and
# the tables retention purges) carries per-table autovacuum settings: migration 0007.
delivery_queue = Table(
    "delivery_queue",
    metadata,
    Column("delivery_id", Uuid, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
    Column("webhook_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("lease_owner", String(64), nullable=True),
    # The event's consumer when the webhook orders per consumer, else NULL: a row is claimed
    # only when no earlier event of the same (webhook, key) is still queued (store/ordering.py).
    Column("ordering_key", Uuid, nullable=True),
    # The fair claim walks the distinct webhooks with queued rows and takes each one's oldest
    # due rows (store/queue_link.py); the earliest due time is read the same way. There is no
    # index on ``available_at`` alone: given one, PostgreSQL's planner walked a backlogged
    # account's rows in time order to find another webhook's (migration 0011).
    Index("ix_delivery_queue_webhook_id_available_at", "webhook_id", "available_at"),
    # The head of each ordered stream; unordered rows (NULL key) are not in it.
    Index(
        "ix_delivery_queue_ordering",
        "webhook_id",
        "ordering_key",
        "event_id",
        postgresql_where=text("ordering_key IS NOT NULL"),
        sqlite_where=text("ordering_key IS NOT NULL"),
    ),
)

# The token window of each rate-limited webhook, shared by every worker (GCRA): the moment,
# in Unix seconds, from which its next delivery may be claimed (store/rate_windows.py).
webhook_rate_windows = Table(
    "webhook_rate_windows",
    metadata,
    Column("webhook_id", Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True),
    Column("next_free_at", Float, nullable=False),
)

# Circuit breakers shared by every worker: one row per destination (scheme + host + port)
# whose circuit is open or being probed; no row means closed.
delivery_destinations = Table(
    "delivery_destinations",
    metadata,
    Column("destination", String(300), primary_key=True),
    Column("failures", Integer, nullable=False),  # consecutive failures that opened it
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("open_until", UTCDateTime(), nullable=False),  # a probe may go out after this
    Column("cooldown_seconds", Float, nullable=False),  # doubles on each failed probe
    Column("probe_owner", String(64), nullable=True),
    Column("probe_until", UTCDateTime(), nullable=True),
)

# Live delivery workers (PostgreSQL): a worker whose heartbeat is older than the takeover
# period is dead, and its leased deliveries are released at once instead of after the lease.
delivery_workers = Table(
    "delivery_workers",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
)

webhook_logs = Table(
    "webhook_logs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("webhook_id", Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("delivery_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("account_id", Uuid, nullable=False),
    Column("event", String(80), nullable=False),
    Column("url", String(500), nullable=False),
    Column("integration_id", Integer, nullable=True),
    Column("http_status", Integer, nullable=False),  # 0 when no response was received
    Column("attempt", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered | retry | failed | disabled
    Column("error_class", String(80), nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    _created(),
    # What was sent and what came back, each header block as the text on the wire
    # ("Name: value" lines joined by CRLF): one small value per attempt, cheap to write.
    Column("request_headers", Text, nullable=True),
    Column("response_headers", Text, nullable=True),
    # outcome too, so a webhook's 24-hour health is counted from the index alone.
    Index("ix_webhook_logs_webhook_created_outcome", "webhook_id", "created_at", "outcome"),
    # An event's page lists the attempts of each of its deliveries.
    Index("ix_webhook_logs_delivery", "delivery_id"),
    Index("ix_webhook_logs_account_created", "account_id", "created_at"),
)

# --- platform domain ---------------------------------------------------------------------

integrations = Table(
    "integrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("api", String(40), nullable=False),
    Column("local_agent", Boolean, nullable=False, server_default=text("false")),
    Column("status", String(16), nullable=False, server_default=text("'active'")),
    Column("logo_url", String(500), nullable=True),
    Column("icon_url", String(500), nullable=True),
    Column("credentials", JSON, nullable=False),
    Column("details", JSON, nullable=True),  # post_connections, coverage, countries
    _created(),
)

consumers = Table(
    "consumers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("email", String(320), nullable=True),
    Column("internal_reference", String(255), nullable=True),
    Column("redirect_url", String(500), nullable=True),
    _created(),
    Index("ix_consumers_account_name", "account_id", "name"),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
    Column("integration_id", Integer, ForeignKey("integrations.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # active | inactive
    Column("credentials_encrypted", Text, nullable=True),
    Column("agent_token_hash", String(64), nullable=True, unique=True),
    Column("agent_status", String(8), nullable=True),  # up | down | None before first ping
    Column("agent_last_seen", UTCDateTime(), nullable=True),
    Column("status_error_code", String(120), nullable=True),  # last connector report
    Column("status_message", Text, nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_connections_consumer", "consumer_id"),
    Index("ix_connections_agent_watch", "agent_status", "agent_last_seen"),
)

activation_links = Table(
    "activation_links",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
    Column("integration_id", Integer, nullable=True),
    Column("connection_id", Uuid, nullable=True),  # set on links that update a connection
    Column("name", String(200), nullable=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    _created(),
)

syncs = Table(
    "syncs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("definition", JSON, nullable=False),
    _created(),
)

flows = Table(
    "flows",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("sync_id", Uuid, ForeignKey("syncs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("triggers", JSON, nullable=False),
    Column("execution", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("cron", String(120), nullable=True),
    Column("next_run_at", UTCDateTime(), nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("sync_id", "name"),
    Index("ix_flows_next_run_at", "next_run_at"),
)

sync_consumers = Table(
    "sync_consumers",
    metadata,
    Column("sync_id", Uuid, ForeignKey("syncs.id", ondelete="CASCADE"), primary_key=True),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    _created(),
)

flow_consumers = Table(
    "flow_consumers",
    metadata,
    Column("flow_id", Uuid, ForeignKey("flows.id", ondelete="CASCADE"), primary_key=True),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("config", JSON, nullable=False),
    Column("enabled_at", UTCDateTime(), nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
)

executions = Table(
    "executions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("sync_id", Uuid, ForeignKey("syncs.id", ondelete="CASCADE"), nullable=False),
    Column("flow_id", Uuid, ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("consumer_id", Uuid, nullable=True),  # None on a parent execution
    Column("parent_id", Uuid, nullable=True),
    Column("status", String(16), nullable=False),  # running | success | error
    Column("trigger", String(16), nullable=False),  # event | timer | chain
    Column("data", JSON, nullable=True),
    Column("message", Text, nullable=True),
    Column("error_code", String(120), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("deadline_at", UTCDateTime(), nullable=True),
    # Set while a process must carry the run out (an in-process runner); a lease that ran out
    # means that process died, and the flow scheduler starts the run again.
    Column("run_lease_until", UTCDateTime(), nullable=True),
    Index("ix_executions_sync_started", "sync_id", "started_at"),
    Index("ix_executions_parent", "parent_id"),
    Index("ix_executions_flow_consumer_status", "flow_id", "consumer_id", "status"),
    Index("ix_executions_status_deadline", "status", "deadline_at"),
    Index("ix_executions_status_run_lease", "status", "run_lease_until"),
)

consumer_issues = Table(
    "consumer_issues",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
    Column("connection_id", Uuid, nullable=False),
    Column("sync_id", Uuid, nullable=True),
    Column("flow_id", Uuid, nullable=True),
    Column("error_code", String(120), nullable=False),
    Column("level", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # open | auto_closed
    Column("message", Text, nullable=False),
    Column("context", JSON, nullable=True),
    Column("occurrences", Integer, nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=True),
    Index(
        "ix_consumer_issues_key", "consumer_id", "connection_id", "sync_id", "error_code", "status"
    ),
    Index("ix_consumer_issues_account_status", "account_id", "status", "last_seen"),
)

issue_occurrences = Table(
    "issue_occurrences",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("issue_id", Uuid, ForeignKey("consumer_issues.id", ondelete="CASCADE"), nullable=False),
    Column("message", Text, nullable=False),
    Column("context", JSON, nullable=True),
    Column("execution_id", Uuid, nullable=True),
    _created(),
    Index("ix_issue_occurrences_issue", "issue_id", "created_at"),
)

pos_orders = Table(
    "pos_orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
    Column("connection_id", Uuid, ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("order_id", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("location_id", String(200), nullable=True),
    Column("data", JSON, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("creation_date", UTCDateTime(), nullable=False),  # the order's, for date filters
    Column("completed_at", UTCDateTime(), nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("connection_id", "order_id"),
    Index("ix_pos_orders_consumer_updated", "consumer_id", "updated_at"),
    Index("ix_pos_orders_consumer_creation", "consumer_id", "creation_date"),
)

# Locations of a POS connection: fed by connectors, or created on the first order seen there.
pos_locations = Table(
    "pos_locations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, nullable=False),
    Column("consumer_id", Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
    Column("connection_id", Uuid, ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("location_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=True),
    Column("address", JSON, nullable=True),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("connection_id", "location_id"),
    Index("ix_pos_locations_consumer", "consumer_id", "location_id"),
)
