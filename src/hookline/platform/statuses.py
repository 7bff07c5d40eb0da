"""The platform's statuses as values. Each is a ``StrEnum``: it is its wire and database
string, so the API, events and stored rows read exactly as before."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"


class ConnectionStatus(StrEnum):
    """Whether a connection's credentials work (``inactive``: they must be renewed)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class AgentStatus(StrEnum):
    """A local agent's liveness, from its heartbeats."""

    UP = "up"
    DOWN = "down"


class SyncStatus(StrEnum):
    """A consumer's status in a sync: active while at least one of its flows is enabled."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class IssueStatus(StrEnum):
    OPEN = "open"
    AUTO_CLOSED = "auto_closed"


class IssueLevel(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class IntegrationStatus(StrEnum):
    """Whether new connections may use an integration of the catalog."""

    ACTIVE = "active"
    INACTIVE = "inactive"
