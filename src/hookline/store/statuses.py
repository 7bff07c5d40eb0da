"""The delivery engine's statuses and outcomes as values. Each is a ``StrEnum``: it is its
wire and database string (a member compares equal to it), so the API, logs and stored rows
read exactly as before. They live in ``store/``, the lowest layer that writes them."""

from __future__ import annotations

from enum import StrEnum


class WebhookStatus(StrEnum):
    """Whether a webhook receives deliveries (``inactive``: switched off by its owner, or by
    hookline with a ``disabled_reason``)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class DeliveryStatus(StrEnum):
    """Where a delivery stands: queued (or waiting for a retry), or finished either way."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Outcome(StrEnum):
    """What one attempt came to, as written in its log row (``dropped`` is never logged)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DISABLED = "disabled"  # a failed attempt that also disabled its webhook
    DROPPED = "dropped"  # never attempted: its webhook is inactive (no log row)
