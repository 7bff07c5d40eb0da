"""Prometheus metrics of the delivery engine.

Counters and the latency histogram are per process (they count what this process sent); the
queue gauges are read from the database at scrape time, so any API process reports the true
queue whichever process does the sending.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest

from hookline.runtime import Runtime
from hookline.store.destinations import open_count
from hookline.store.queue import queue_stats
from hookline.store.statuses import Outcome

ATTEMPTS = Counter(
    "hookline_delivery_attempts",
    "Delivery attempts made by this process, by outcome "
    "(delivered, retry, failed, disabled; dropped = not sent, webhook inactive).",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "hookline_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt (request sent to response read or error).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH = Gauge(
    "hookline_delivery_queue_depth",
    "Deliveries waiting in the queue: due, scheduled for a retry, or being sent (leased).",
)
QUEUE_DUE = Gauge("hookline_delivery_queue_due", "Deliveries due now and not yet claimed.")
OLDEST_DUE_AGE = Gauge(
    "hookline_delivery_oldest_due_age_seconds",
    "How long the oldest due, unclaimed delivery has been waiting (0 when none).",
)
OPEN_CIRCUITS = Gauge(
    "hookline_delivery_open_circuits",
    "Destinations (scheme + host + port) whose circuit is open: nothing is sent to them "
    "until a probe succeeds.",
)

RETENTION_PURGED = Counter(
    "hookline_retention_purged_rows",
    "Rows removed by retention in this process, by table (events, deliveries, attempts).",
    ["table"],
)
RETENTION_LAST_PASS = Gauge(
    "hookline_retention_last_pass_timestamp_seconds",
    "When this process last finished a retention pass (0: never).",
)

for _table in ("events", "deliveries", "attempts"):
    RETENTION_PURGED.labels(table=_table)
for _outcome in Outcome:
    ATTEMPTS.labels(outcome=_outcome)


async def render(runtime: Runtime) -> bytes:
    """Refresh the queue gauges from the database, then render every metric of the process."""
    async with runtime.db.read() as conn:
        stats = await queue_stats(conn, runtime.clock.now())
        circuits = await open_count(conn)
    QUEUE_DEPTH.set(stats.depth)
    QUEUE_DUE.set(stats.due)
    OLDEST_DUE_AGE.set(stats.oldest_due_age_seconds)
    OPEN_CIRCUITS.set(circuits)
    return generate_latest(REGISTRY)
